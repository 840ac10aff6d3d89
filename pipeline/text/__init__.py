"""Layer 1: text helpers every stage shares: normalisation, content hashes, URL canonicalisation."""
