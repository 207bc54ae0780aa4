"""gongche fleet package."""
