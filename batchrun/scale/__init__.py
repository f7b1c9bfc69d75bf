"""Running one input as several shards (contiguous parts run as runs of their own), then
assembling their parts into the one output. Only `ray_run` imports Ray."""
