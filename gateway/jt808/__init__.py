"""gongche gateway/jt808 package."""
