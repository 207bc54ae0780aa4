"""gongche scheduler package."""
