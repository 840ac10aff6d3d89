"""Layer 5: the stage order, written once (`flows.ingest`), and the flows built on it:
streaming crawl+extract for one-process runs, maintenance."""
