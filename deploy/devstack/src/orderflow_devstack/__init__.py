"""orderflow_devstack: the local OrderFlow stack without Docker (and its pytest fixtures)."""
