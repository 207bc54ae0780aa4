"""Test services: re-exported from :mod:`fleet.localservices` (benchmarks use them too)."""

from fleet.localservices import Mosquitto, Postgres, Redis, free_port, wait_port

__all__ = ["Mosquitto", "Postgres", "Redis", "free_port", "wait_port"]
