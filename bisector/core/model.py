"""The typed verdict of one probe run, and the one mapping from exit codes to it."""

from __future__ import annotations

import enum


class Verdict(str, enum.Enum):
    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"
    # The probe could not run at all (exit 128+ or killed): the search must stop.
    ABORT = "abort"

    @classmethod
    def from_exit_code(cls, code: int) -> "Verdict":
        """`git bisect run` convention: 0 good, 125 skip, 1-127 bad, else abort.

        Negative codes (killed by a signal, as subprocess reports them) abort too.
        """
        if code == 0:
            return cls.GOOD
        if code == 125:
            return cls.SKIP
        if 1 <= code <= 127:
            return cls.BAD
        return cls.ABORT
