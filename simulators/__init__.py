"""gongche simulators package."""
