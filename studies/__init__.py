"""Self-contained studies: small exact experiments run as `python -m studies.<name>`."""
