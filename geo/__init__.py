"""gongche geo package."""
