"""Use cases of export-service and the ports they need."""
