"""gongche ledger package."""
