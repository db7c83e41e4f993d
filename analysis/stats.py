"""Uncertainty of averaged evaluation metrics: percentile bootstrap over prompts."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np


def bootstrap_ci(values_SxN, num_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Percentile-bootstrap confidence interval of the mean over S samples, for each of N columns.

  Each resample draws S rows with replacement; the interval is the ((1 - level) / 2,
  (1 + level) / 2) quantiles of the N resampled means. All columns share the resampled rows, so a
  column's interval does not depend on the other columns (it equals the interval of that column
  alone with the same seed). Deterministic given `seed`.

  Returns (mean_N, lo_N, hi_N) as float64 numpy arrays; mean_N is the plain sample mean.
  With S = 1 the interval collapses to the single value.
  """
  values = np.asarray(values_SxN, dtype=np.float64)
  if values.ndim != 2 or values.shape[0] < 1:
    raise ValueError(f'bootstrap_ci expects values of shape (S >= 1, N), got {values.shape}')
  if not 0.0 < level < 1.0:
    raise ValueError(f'bootstrap_ci level={level!r} must be in (0, 1)')
  if int(num_resamples) < 1:
    raise ValueError(f'bootstrap_ci num_resamples={num_resamples!r} must be >= 1')
  if not np.all(np.isfinite(values)):
    raise ValueError('bootstrap_ci values contain NaN or inf')
  num_samples = values.shape[0]
  rng = np.random.default_rng(seed)
  # How often each row is drawn in each resample: a multinomial row of counts summing to S.
  # The resampled means are then one matrix product, without materialising R x S x N.
  counts_RxS = rng.multinomial(num_samples, np.full(num_samples, 1.0 / num_samples),
                               size=int(num_resamples))
  means_RxN = counts_RxS @ values / num_samples
  lo_N, hi_N = np.quantile(means_RxN, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
  return values.mean(axis=0), lo_N, hi_N


def ci_entry(values_SxN, seed: int = 0, num_resamples: int = 1000) -> Dict[str, list]:
  """{'mean', 'lo', 'hi'}: bootstrap_ci of each column, as lists (the evaluators' JSON form)."""
  mean, lo, hi = bootstrap_ci(values_SxN, num_resamples=num_resamples, seed=seed)
  return {'mean': mean.tolist(), 'lo': lo.tolist(), 'hi': hi.tolist()}


def scalar_ci_entry(values_S, seed: int = 0, num_resamples: int = 1000) -> Dict[str, float]:
  """{'mean', 'lo', 'hi'} of one metric over S samples, as floats."""
  entry = ci_entry(np.asarray(values_S, np.float64)[:, None], seed, num_resamples)
  return {k: float(v[0]) for k, v in entry.items()}
