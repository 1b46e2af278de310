"""`python -m pipeline …`: the command line."""

from pipeline.entrypoints.cli import main

main()
