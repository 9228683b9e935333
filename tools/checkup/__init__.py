"""selftest's room: the stages of `imagenet-tools selftest`, each run in a child process."""
