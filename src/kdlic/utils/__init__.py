"""Small shared utilities: checkpoints, atomic files, device names."""
