"""A run as both training and analysis see it, below both of them.

  checkpoint.py   the checkpoint format: asynchronous orbax saves, digests, fallback
  positions.py    the compiled per-position evaluation and the ICL score of its curves
  restored.py     one seed's model and any kept checkpoint's parameters of a restored run

Imports nothing of training/ or analysis/: training writes runs with it, analysis reads them
with it (tests/test_layers.py checks the layer order).
"""
