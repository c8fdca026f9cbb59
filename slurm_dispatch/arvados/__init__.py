"""The Arvados side: the API client (the only code that imports requests)."""
