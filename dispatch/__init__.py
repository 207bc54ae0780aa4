"""gongche dispatch package."""
