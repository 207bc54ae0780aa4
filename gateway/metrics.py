"""Gateway counters for ``/metrics`` (Prometheus)."""

from __future__ import annotations

from prometheus_client import Counter

MESSAGES = Counter("gongche_gateway_messages_total", "Messages received", ["protocol"])
DECODE_ERRORS = Counter("gongche_gateway_decode_errors_total",
                        "Malformed sentences or frames (counted, logged, skipped)",
                        ["protocol", "reason"])
FIXES = Counter("gongche_gateway_fixes_total", "Fixes decoded", ["protocol"])
ACCEPTED = Counter("gongche_gateway_fixes_accepted_total", "Fixes passed on", ["protocol"])
REJECTED = Counter("gongche_gateway_fixes_rejected_total",
                   "Fixes dropped by the filter chain or the directory",
                   ["reason", "terminal"])
LIVE_GEO_SKIPPED = Counter("gongche_gateway_live_geo_skipped_total",
                           "Newest fixes the live GEO index cannot hold (beyond ±85.05° "
                           "latitude): kept as the terminal's last fix, left out of the index")
