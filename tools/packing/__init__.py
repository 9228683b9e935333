"""What `imagenet-tools pack` writes: webdataset shards of a prepared tree (tools/pack.py is its command line)."""
