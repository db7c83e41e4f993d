"""Linear probes: how much of a task quantity is linearly readable from a layer's stream.

A probe is closed-form ridge regression from hidden states (one layer, one position) to a
target vector, fit on a train split of prompts and scored on held-out prompts by

  R^2  = 1 - sum ||y - y_hat||^2 / sum ||y - mean_test(y)||^2     (all target coordinates pooled)
  NMSE = 1 - R^2                                                  (normalised squared error)

so a perfect read-out scores R^2 = 1 and one no better than the held-out mean scores about 0
(it can fall below 0). The ridge strength is picked from a grid on a validation slice of the
train split, on a scale set by the features' variance, so features of any size probe alike.

Targets for in-context regression (Akyurek et al. 2022, "What learning algorithm is
in-context learning?"): the weight vector w of the prompt's function, and the minimum-norm
least-squares solution on the examples seen so far (`least_squares_prefix`).

Everything here is NumPy (float64) on the host: probes are small and must be exact.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

DEFAULT_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _as_2d(a) -> np.ndarray:
  a = np.asarray(a, np.float64)
  return a[:, None] if a.ndim == 1 else a.reshape(a.shape[0], -1)


def fit_ridge(features_NxD, targets_NxK, alpha: float):
  """(W_DxK, b_K) minimising ||Y - X W - b||^2 + alpha ||W||^2 (intercept not penalised)."""
  x, y = _as_2d(features_NxD), _as_2d(targets_NxK)
  x_mean, y_mean = x.mean(0), y.mean(0)
  xc, yc = x - x_mean, y - y_mean
  n, d = xc.shape
  if d <= n:      # primal: (X'X + a I) W = X'Y
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(d), xc.T @ yc)
  else:           # dual: W = X' (X X' + a I)^-1 Y  (cheaper with fewer prompts than features)
    w = xc.T @ np.linalg.solve(xc @ xc.T + alpha * np.eye(n), yc)
  return w, y_mean - x_mean @ w


def predict_ridge(features_NxD, w_DxK, b_K) -> np.ndarray:
  return _as_2d(features_NxD) @ w_DxK + b_K


def r2_score(targets_NxK, predictions_NxK) -> float:
  """1 - SSE / SST over all coordinates (SST about the mean of these targets); NaN if SST=0."""
  y, p = _as_2d(targets_NxK), _as_2d(predictions_NxK)
  sst = float(np.sum(np.square(y - y.mean(0))))
  if sst <= 0.0:
    return float('nan')
  return 1.0 - float(np.sum(np.square(y - p))) / sst


def _alpha_scale(x_NxD) -> float:
  """Mean per-feature sum of squares about the mean: ridge alphas are multiples of it."""
  xc = x_NxD - x_NxD.mean(0)
  return max(float(np.sum(np.square(xc))) / max(x_NxD.shape[1], 1), 1e-12)


def select_alpha(features_NxD, targets_NxK, alphas: Sequence[float] = DEFAULT_ALPHAS,
                 validation_fraction: float = 0.25) -> float:
  """The ridge strength (relative alpha x feature scale) best on a validation slice (the
  last `validation_fraction` of the given prompts)."""
  x, y = _as_2d(features_NxD), _as_2d(targets_NxK)
  n = x.shape[0]
  n_val = int(round(n * validation_fraction))
  scale = _alpha_scale(x)
  if len(alphas) == 1 or n_val < 2 or n - n_val < 2:
    return float(alphas[len(alphas) // 2]) * scale
  best, best_err = None, np.inf
  for a in alphas:
    w, b = fit_ridge(x[:-n_val], y[:-n_val], a * scale)
    err = float(np.sum(np.square(y[-n_val:] - predict_ridge(x[-n_val:], w, b))))
    if err < best_err:
      best, best_err = a, err
  return float(best) * scale


def probe(features_NxD, targets_NxK, *, train_fraction: float = 0.5,
          alphas: Sequence[float] = DEFAULT_ALPHAS) -> Dict[str, float]:
  """Fits a ridge probe on the first `train_fraction` of prompts, scores the rest.

  Returns {'r2', 'nmse', 'alpha', 'train_r2', 'num_train', 'num_test'}.
  """
  x, y = _as_2d(features_NxD), _as_2d(targets_NxK)
  if x.shape[0] != y.shape[0]:
    raise ValueError(f'{x.shape[0]} feature rows but {y.shape[0]} target rows')
  n_train = int(round(x.shape[0] * train_fraction))
  if n_train < 2 or x.shape[0] - n_train < 2:
    raise ValueError(f'{x.shape[0]} prompts are too few for a train / test split')
  alpha = select_alpha(x[:n_train], y[:n_train], alphas)
  w, b = fit_ridge(x[:n_train], y[:n_train], alpha)
  r2 = r2_score(y[n_train:], predict_ridge(x[n_train:], w, b))
  return {'r2': r2, 'nmse': 1.0 - r2, 'alpha': alpha,
          'train_r2': r2_score(y[:n_train], predict_ridge(x[:n_train], w, b)),
          'num_train': n_train, 'num_test': int(x.shape[0] - n_train)}


def layer_position_probes(hidden_LxNxTxD, targets, positions: Sequence[int], *,
                          target_positions: Optional[Sequence[int]] = None,
                          train_fraction: float = 0.5,
                          alphas: Sequence[float] = DEFAULT_ALPHAS) -> Dict[str, np.ndarray]:
  """Probes every layer at every chosen position.

  hidden_LxNxTxD: stacked hidden states (layers, prompts, positions, width).
  targets: NxK (one target per prompt, e.g. w) or NxPxK (one per probed position, e.g. the
    least-squares solution so far; then `target_positions[j]` indexes the P axis for
    `positions[j]`, by default j itself).
  Returns {'r2': LxJ, 'nmse': LxJ, 'alpha': LxJ, 'positions': J}.
  """
  hidden = np.asarray(hidden_LxNxTxD, np.float64)
  targets = np.asarray(targets, np.float64)
  num_layers = hidden.shape[0]
  positions = [int(p) for p in positions]
  if target_positions is None:
    target_positions = list(range(len(positions)))
  r2 = np.full((num_layers, len(positions)), np.nan)
  alpha = np.full_like(r2, np.nan)
  for j, (t, tp) in enumerate(zip(positions, target_positions)):
    y = targets if targets.ndim == 2 else targets[:, tp]
    for layer in range(num_layers):
      result = probe(hidden[layer, :, t], y, train_fraction=train_fraction, alphas=alphas)
      r2[layer, j], alpha[layer, j] = result['r2'], result['alpha']
  return {'r2': r2, 'nmse': 1.0 - r2, 'alpha': alpha, 'positions': np.asarray(positions)}


def least_squares_prefix(xs_BxNxD, ys_BxN, rcond: float = 1e-8) -> np.ndarray:
  """ls_BxNxD: ls[b, i] is the minimum-norm least-squares weight vector on examples 0..i-1
  of prompt b (zero for i = 0): what an exact learner knows when it reads x_i."""
  xs = np.asarray(xs_BxNxD, np.float64)
  ys = np.asarray(ys_BxN, np.float64)
  batch, num, dims = xs.shape
  out = np.zeros((batch, num, dims))
  for i in range(1, num):
    pinv_BxDxI = np.linalg.pinv(xs[:, :i], rcond=rcond)
    out[:, i] = np.einsum('bdi,bi->bd', pinv_BxDxI, ys[:, :i])
  return out


def regression_probe_targets(batch, params) -> Dict[str, np.ndarray]:
  """Probe targets of a regression batch and its function parameters: 'least_squares'
  (BxNxD, per example count) and 'y' (BxNx1: the label of the query x_i, a positive control:
  whatever the model predicts well is readable at its last layer) always, 'w' (BxD) when the
  function class has a weight vector ('w_D': linear, sparse and noisy linear regression)."""
  targets = {'least_squares': least_squares_prefix(batch['xs_BxNxD'], batch['ys_BxN']),
             'y': np.asarray(batch['ys_BxN'], np.float64)[..., None]}
  if isinstance(params, dict) and 'w_D' in params:
    targets['w'] = np.asarray(params['w_D'], np.float64)
  return targets
