"""`imagenet-tools demo`'s machinery: the whole toolkit run stage by stage on generated data."""
