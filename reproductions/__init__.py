"""Reproductions of the seed papers' claims, one module per paper, each runnable as
`python -m reproductions.<name> --out DIR` and writing JSON, Markdown and PNG into DIR."""
