"""Original single-file checkpoints: a mapping learned from the header alone, replayed tensor by tensor."""
