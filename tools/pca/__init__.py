"""`imagenet-tools compute-pca`'s machinery: exact pixel moments, the PIL and DALI backends."""
