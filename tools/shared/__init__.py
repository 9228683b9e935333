"""What several tools share: the job runner with its progress line and CPU count, figures."""
