"""gongche bench package."""
