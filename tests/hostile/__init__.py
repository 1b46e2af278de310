"""A corpus of hostile input with its exact expected final state."""
