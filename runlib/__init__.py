"""A run as both training and analysis see it, below both of them.

  checkpoint.py      the checkpoint format: asynchronous orbax saves, digests, fallback
  hooks.py           the host loop's hook protocol, and what a hook handed to it is given
  positions.py       the compiled per-position evaluation and the ICL score of its curves
  positions_plot.py  the PNG of those curves through training
  reference.py       the frozen reference of a run started from another
  restored.py        one seed's model and any kept checkpoint's parameters of a restored run

Imports nothing of training/ or analysis/: training writes runs with it, analysis reads them
with it (tests/test_layers.py checks the layer order).
"""
