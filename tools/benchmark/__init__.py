"""`imagenet-tools bench`'s machinery: options, timed modes, stage profile, report."""
