"""The command line (click). `python -m bisector.cli` runs it; `bisector.cli.main.main` is the group."""
