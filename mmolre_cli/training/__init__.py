"""Training, evaluation, checkpoints and experiment tracking."""
