"""ledger ORM models (filled in by its issue)."""
