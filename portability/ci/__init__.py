"""Pull requests and many machines: the CI job list, merging per-machine shards, diffing two runs."""
