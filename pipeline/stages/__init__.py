"""Layer 3: one module per stage (crawl, extract, clean, dedupe, store); each stage function
reads the bucket, writes the bucket and returns keys."""
