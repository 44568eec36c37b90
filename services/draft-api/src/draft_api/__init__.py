"""draft-api: draft sales orders, validation, approval and push requests."""
