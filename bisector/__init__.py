"""bisector: find the commit or data revision that broke an ML model."""

__version__ = "0.1.0"
