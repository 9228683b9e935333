"""Generated images (`imagenet-tools make-demo-data`, `make-bench-data`), drawn with NumPy."""
