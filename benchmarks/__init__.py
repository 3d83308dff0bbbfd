"""relaybus benchmarks: `python -m benchmarks --help`."""
