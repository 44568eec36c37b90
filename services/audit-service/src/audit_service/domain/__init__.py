"""Pure audit domain: entries, their canonical form, the per-org hash chain, queries."""
