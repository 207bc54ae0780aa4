"""gongche telematics package."""
