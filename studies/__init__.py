"""Studies and reproductions of the seed papers' claims, one module each, run as
`python -m studies.<name> --out DIR` (or `--workdir DIR` for those that read a finished sweep),
each writing JSON, a Markdown table and a PNG. What they share: runner.py (their runs, caches
and files) and sweeps.py (sweep files and their vmapped member runs, the logic of sweep.py)."""
