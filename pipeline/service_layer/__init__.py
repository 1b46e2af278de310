"""The use cases: categorise records, run a file or a window, the stream loop, redrive, runs."""
