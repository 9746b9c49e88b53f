"""`make bench`: the loopback benchmark (python -m bench.run)."""
