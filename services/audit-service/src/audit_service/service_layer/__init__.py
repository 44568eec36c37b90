"""Use cases of the audit service: ingest a batch, query the log, verify chains."""
