"""Layer 4: the run report (JSON in the bucket, HTML beside it, a summary on the terminal)."""
