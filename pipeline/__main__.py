"""`python -m pipeline …`: the command line."""

from pipeline.entrypoints.cli.app import main

main()
