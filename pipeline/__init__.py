"""Transaction categorisation pipeline: hexagonal core, adapters and entry points."""
