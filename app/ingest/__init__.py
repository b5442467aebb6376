"""Ingest: turning track API request bodies into the items that travel on the raw topic."""
