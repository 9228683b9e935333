"""Command-line tools (`imagenet-tools ...`). Nothing imports this package."""
