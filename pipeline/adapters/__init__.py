"""Adapters: one module per technology, each implementing domain ports."""
