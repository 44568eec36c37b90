"""draft_api."""
