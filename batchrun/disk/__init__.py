"""What reaches the disk and survives a crash: the ordered output and its journal, the
checkpoint with its snapshot, how a new start reads them back, and the files' atomic publishing."""
