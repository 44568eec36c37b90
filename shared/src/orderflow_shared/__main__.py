"""`python -m orderflow_shared topics create` and `python -m orderflow_shared token ...`."""
