"""`imagenet-tools ablate`'s machinery: the paper's ablations trained one after another, compared, reported."""
