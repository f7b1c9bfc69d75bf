"""Running one input as several shards: contiguous parts, each a run of its own, a few at a time,
then assembling them into the one output. Only `ray_run` and `cluster` import Ray."""
