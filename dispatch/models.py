"""dispatch ORM models (filled in by its issue)."""
