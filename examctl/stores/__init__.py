"""Stores outside the database: Redis sessions, archive destinations."""
