"""draft-api: draft sales orders, validation, approval and push requests."""

__version__ = "0.1.0"
