"""The built-in examples of `bisector demo`."""
