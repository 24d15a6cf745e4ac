"""Read-only views for the CLI: the catalogue (`zoo list`), key maps (`zoo trace`), file reports (`zoo inspect`)."""
