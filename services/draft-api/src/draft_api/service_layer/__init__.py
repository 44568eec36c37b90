"""Use cases of draft-api; they talk to the outside only through the ports."""
