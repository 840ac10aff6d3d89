"""Layer 0: paths, configuration, errors, bucket keys (`layout`), the bucket and the run context.

Imports nothing else of the project."""
