"""orderflow_shared."""
