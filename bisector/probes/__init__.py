"""Probes: each turns a built workspace into an Observation (see base.py)."""
