"""The project's error types: each carries a one-line message that names the fix, and an exit code."""

from __future__ import annotations

# Exit codes of `bisector run` (documented in --help and the README).
EXIT_FOUND = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class BisectorError(Exception):
    """A user-facing error. `str(err)` is one line; the CLI prints `Error: <line>`."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(BisectorError):
    """Bad input: unknown revision, bad option value, missing probe..."""


class GitError(BisectorError):
    """A git command failed in a way the user can act on. `stderr`: all git printed (the
    message keeps its last line)."""

    def __init__(self, message: str, exit_code: int | None = None, stderr: str = ""):
        super().__init__(message, exit_code)
        self.stderr = stderr


class ContradictionError(BisectorError):
    """Observations that cannot all hold under the search's model."""

    exit_code = EXIT_NOT_FOUND


class BoundsError(BisectorError):
    """The bounds do not reproduce (good is bad, or bad is good)."""

    exit_code = EXIT_NOT_FOUND


class ProbeAbort(BisectorError):
    """A probe failed in a way that must stop the search (exit 128+, killed)."""

    exit_code = EXIT_NOT_FOUND


class JournalError(BisectorError):
    """A journal that cannot be read or belongs to an incompatible version."""


class LockedError(BisectorError):
    """Another bisector session holds the repository's lock."""
