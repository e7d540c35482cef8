"""Fixtures shared by the end-to-end tests (one Slurm for the whole run)."""

from tests.fixtures.slurm import slurm_cluster  # noqa: F401 - a session-scoped fixture
