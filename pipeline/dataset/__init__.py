"""Layer 2: what lives in the bucket: the article schema, manifests and reading, crawl state,
WARC archives, rejects."""
