"""Small shared utilities: checkpoints, files, devices."""
