"""gongche gateway package."""
