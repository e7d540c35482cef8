"""The debugging journal: writing, reading, reuse and replay."""
