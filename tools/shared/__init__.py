"""What several tools share: figures."""
