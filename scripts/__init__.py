"""Developer launchers, run as modules from the repository root: `python -m scripts.run`
(make run), `python -m scripts.with_db -- <command>` (make test), `python -m
scripts.check_runtime`; `scripts.stack` and `scripts.processes` serve the chaos run, the bench
and the tests."""
