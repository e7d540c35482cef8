"""bisector: find the commit or data revision that broke an ML model.

The Python API (`bisector.bisect`, `bisector.Session`, the typed results; see docs/api.md) lives in
`bisector.api` and is imported on first use, so `import bisector` (and `bisector --help`) stays light.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_API = (
    "Attribution", "Axis", "BisectorError", "Detected", "Handler", "Observation", "Outcome", "Report", "Role",
    "RunOptions", "Session", "SessionResult", "SessionSummary", "Status", "Step", "UsageError", "Verdict",
    "bisect", "init", "load_session", "report",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("bisector.api"), name)
    raise AttributeError(f"module 'bisector' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
