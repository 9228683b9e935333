"""`imagenet-tools prepare`'s machinery: layouts, header reader, per-file check, re-encoding, report."""
