"""Database access: schema, engines, locks, set-based writes."""
