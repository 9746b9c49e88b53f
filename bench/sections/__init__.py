"""One module per measurement; each has `run(bench)` (bench.context.Bench)."""
