"""Layer 2: process machinery: the bounded worker pool, progress display, the embedded S3 server."""
