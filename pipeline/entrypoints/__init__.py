"""Entry points: parse arguments, load settings, build adapters, run."""
