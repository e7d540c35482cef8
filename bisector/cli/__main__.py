"""`python -m bisector.cli ...` runs the command line."""

from bisector.cli.main import main

main()
