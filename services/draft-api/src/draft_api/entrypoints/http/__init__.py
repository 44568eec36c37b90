"""The REST API of draft orders."""
