"""audit_service."""
