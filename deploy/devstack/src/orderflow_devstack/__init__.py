"""orderflow_devstack."""
