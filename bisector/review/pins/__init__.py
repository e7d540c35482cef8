"""Pinned known-good configurations."""
