"""Tests that start no service: docs, the compose file, the DAG file."""
