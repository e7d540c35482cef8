"""numpy, imported on its first use.

`from bisector.core.arrays import np` is numpy for the code (and for type checkers), but the
import itself (~90 ms) happens at the first attribute taken from it. A run starts `git rev-list`
first and imports numpy while git walks the history (`io.history.load_candidates`), instead of
paying for both one after the other; commands that never compute on arrays never import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


class _Numpy:
    """Stands for the numpy module: each attribute is fetched from it once (importing it the
    first time) and then kept here, so later uses cost a plain attribute lookup."""

    def __getattr__(self, name: str) -> Any:
        import numpy

        value = getattr(numpy, name)
        setattr(self, name, value)
        return value


def load() -> None:
    """Import numpy now (work to overlap with a subprocess that is already running)."""
    import numpy  # noqa: F401


if TYPE_CHECKING:
    import numpy as np
else:
    np = _Numpy()
