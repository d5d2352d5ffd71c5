"""Training: configs, losses, and the resumable loop shared by `train` and `distill`."""
