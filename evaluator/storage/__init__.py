"""Database models and the object store."""
