"""Classical predictors for in-context binary classification (data/logistic.py).

Every predictor maps a batch of prompts `(xs_BxNxD, targets_BxN)` (targets: the class in
{0, 1}) to `logits_BxN`: at position i, the log-odds of class 1 for x_i computed from the pairs
before i only (position 0 sees none). Hard classifiers return +-inf (or 0 for a tie) and carry
`probabilistic = False`: their accuracy is reported, not their cross-entropy. All are batched
and jittable.

  logistic_regression   L2-regularised logistic regression without intercept, fitted on every
                        prefix: minimises 0.5 |w|^2 + C sum_i log(1 + exp(-s_i w·x_i))
                        (scikit-learn's objective, fit_intercept=False) by damped Newton. With
                        C = weight_scale^2 it is the MAP estimate under TART's prior
                        w ~ N(0, weight_scale^2 I) on the logit weights.
  laplace               the Bayes posterior predictive under that prior, in the Laplace
                        approximation (Gaussian at the MAP with the Hessian as precision) with
                        MacKay's probit approximation of the Gaussian-logistic integral:
                        logit = mu / sqrt(1 + pi s^2 / 8), mu = w_MAP·x, s^2 = x^T H^-1 x.
  nearest_neighbour     the class of the nearest earlier x (Euclidean).
  averaging             sign of (sum_i s_i x_i)·x, s_i = 2 y_i - 1 (the class-mean direction).
  oracle                the true w (the Bayes classifier that knows the task; an upper bound);
                        built by the evaluator from the task, not here.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Dict

import jax
import jax.numpy as jnp

NEWTON_STEPS = 40
# Step sizes tried at every Newton iteration; the best of them (or none) is taken, so the
# objective never increases (plain Newton can overshoot on nearly separable data).
STEP_SIZES = tuple(0.5 ** k for k in range(8))


def _prefix_mask_KxN(num_points: int) -> jax.Array:
  """mask[k, i] = 1 where pair i is in the context of position k (i < k)."""
  return (jnp.arange(num_points)[None, :] < jnp.arange(num_points)[:, None]).astype(jnp.float32)


def _objective_BxK(w_BxKxD, xs_BxNxD, signs_BxN, weights_BxKxN, inv_c):
  margins_BxKxN = jnp.einsum('bkd,bnd->bkn', w_BxKxD, xs_BxNxD) * signs_BxN[:, None, :]
  data = jnp.sum(weights_BxKxN * jax.nn.softplus(-margins_BxKxN), axis=-1)
  return 0.5 * inv_c * jnp.sum(jnp.square(w_BxKxD), axis=-1) + data


def _fit_prefix(xs_BxNxD, targets_BxN, c, num_steps):
  """(w_BxKxD, hessian_BxKxDxD): see `prefix_logistic_regression`."""
  _, num_points, n_dims = xs_BxNxD.shape
  inv_c = 1.0 / jnp.asarray(c, xs_BxNxD.dtype)
  signs_BxN = 2.0 * targets_BxN - 1.0
  weights_BxKxN = jnp.broadcast_to(_prefix_mask_KxN(num_points),
                                   (xs_BxNxD.shape[0], num_points, num_points))
  eye_DxD = jnp.eye(n_dims)

  def gradient_and_hessian(w_BxKxD):
    logits_BxKxN = jnp.einsum('bkd,bnd->bkn', w_BxKxD, xs_BxNxD)
    p_BxKxN = jax.nn.sigmoid(logits_BxKxN)
    residual_BxKxN = weights_BxKxN * (p_BxKxN - targets_BxN[:, None, :])
    grad_BxKxD = inv_c * w_BxKxD + jnp.einsum('bkn,bnd->bkd', residual_BxKxN, xs_BxNxD)
    curvature_BxKxN = weights_BxKxN * p_BxKxN * (1.0 - p_BxKxN)
    hess_BxKxDxD = inv_c * eye_DxD + jnp.einsum('bkn,bnd,bne->bkde', curvature_BxKxN,
                                                xs_BxNxD, xs_BxNxD)
    return grad_BxKxD, hess_BxKxDxD

  def newton(w_BxKxD, _):
    grad_BxKxD, hess_BxKxDxD = gradient_and_hessian(w_BxKxD)
    step_BxKxD = jnp.linalg.solve(hess_BxKxDxD, grad_BxKxD[..., None])[..., 0]
    candidates_SxBxKxD = jnp.stack([w_BxKxD] + [w_BxKxD - t * step_BxKxD for t in STEP_SIZES])
    values_SxBxK = jax.vmap(
        lambda w: _objective_BxK(w, xs_BxNxD, signs_BxN, weights_BxKxN, inv_c))(
            candidates_SxBxKxD)
    best_BxK = jnp.argmin(values_SxBxK, axis=0)
    chosen = jnp.take_along_axis(candidates_SxBxKxD, best_BxK[None, ..., None], axis=0)[0]
    return chosen, None

  w0_BxKxD = jnp.zeros(xs_BxNxD.shape[:1] + (num_points, n_dims), xs_BxNxD.dtype)
  w_BxKxD, _ = jax.lax.scan(newton, w0_BxKxD, None, length=num_steps)
  return w_BxKxD, gradient_and_hessian(w_BxKxD)[1]


@functools.partial(jax.jit, static_argnames='num_steps')
def prefix_logistic_regression(xs_BxNxD: jax.Array, targets_BxN: jax.Array, c,
                               num_steps: int = NEWTON_STEPS) -> Dict[str, jax.Array]:
  """L2-regularised logistic regression on every prefix of every prompt, and its Laplace
  posterior predictive. For prompt b and prefix length k = 0..N-1 (the pairs before k):

    w_BxKxD          the minimiser of 0.5 |w|^2 / C + sum_{i<k} log(1 + exp(-s_i w·x_i)), the
                     same as scikit-learn's 0.5 |w|^2 + C sum log-loss (fit_intercept=False)
    hessian_BxKxDxD  the Hessian of that objective there (the Laplace precision)
    logits_BxK       w_k·x_k
    laplace_BxK      mu / sqrt(1 + pi s^2 / 8), mu = w_k·x_k, s^2 = x_k^T H_k^-1 x_k: the
                     posterior predictive under w ~ N(0, C I) in the Laplace approximation
                     with MacKay's probit approximation

  C may be traced (one compilation serves every C); damped Newton from w = 0.
  """
  w_BxKxD, hess_BxKxDxD = _fit_prefix(xs_BxNxD, targets_BxN, c, num_steps)
  mean_BxK = jnp.einsum('bkd,bkd->bk', w_BxKxD, xs_BxNxD)
  solved_BxKxD = jnp.linalg.solve(hess_BxKxDxD, xs_BxNxD[..., None])[..., 0]
  variance_BxK = jnp.einsum('bkd,bkd->bk', xs_BxNxD, solved_BxKxD)
  return {'w_BxKxD': w_BxKxD, 'hessian_BxKxDxD': hess_BxKxDxD, 'logits_BxK': mean_BxK,
          'laplace_BxK': mean_BxK / jnp.sqrt(1.0 + math.pi * variance_BxK / 8.0)}


def logistic_regression_logits(xs_BxNxD, targets_BxN, c) -> jax.Array:
  """logits_BxN: w_k·x_k with w_k fitted on the pairs before position k."""
  return prefix_logistic_regression(xs_BxNxD, targets_BxN, c)['logits_BxK']


def laplace_logits(xs_BxNxD, targets_BxN, c) -> jax.Array:
  """logits_BxN of the Laplace-approximate posterior predictive under w ~ N(0, C I)."""
  return prefix_logistic_regression(xs_BxNxD, targets_BxN, c)['laplace_BxK']


def _hard_logits(score_BxN: jax.Array) -> jax.Array:
  return jnp.where(score_BxN > 0, jnp.inf, jnp.where(score_BxN < 0, -jnp.inf, 0.0))


@jax.jit
def nearest_neighbour_logits(xs_BxNxD, targets_BxN) -> jax.Array:
  """+-inf for the class of the nearest earlier x; 0 at position 0 (no context)."""
  num_points = xs_BxNxD.shape[1]
  sq_BxN = jnp.sum(jnp.square(xs_BxNxD), -1)
  dist_BxKxN = sq_BxN[:, :, None] + sq_BxN[:, None, :] - 2.0 * jnp.einsum(
      'bkd,bnd->bkn', xs_BxNxD, xs_BxNxD)
  dist_BxKxN = jnp.where(_prefix_mask_KxN(num_points) > 0, dist_BxKxN, jnp.inf)
  nearest_BxK = jnp.argmin(dist_BxKxN, axis=-1)
  label_BxK = jnp.take_along_axis(targets_BxN, nearest_BxK, axis=1)
  return jnp.where(jnp.arange(num_points) > 0, _hard_logits(2.0 * label_BxK - 1.0), 0.0)


@jax.jit
def averaging_logits(xs_BxNxD, targets_BxN) -> jax.Array:
  """+-inf by the sign of (sum_{i<k} s_i x_i)·x_k; 0 where that is 0 (e.g. position 0)."""
  signed_BxNxD = (2.0 * targets_BxN - 1.0)[..., None] * xs_BxNxD
  before_BxNxD = jnp.cumsum(signed_BxNxD, axis=1) - signed_BxNxD
  return _hard_logits(jnp.einsum('bnd,bnd->bn', before_BxNxD, xs_BxNxD))


def _named(fn, probabilistic: bool):
  wrapped = lambda xs, targets: fn(xs, targets)
  wrapped.probabilistic = probabilistic
  return wrapped


def get_baselines(task) -> Dict[str, Callable]:
  """name -> predictor(xs_BxNxD, targets_BxN) -> logits_BxN for a logistic_regression task.

  Logistic regression at C = weight_scale^2 (the MAP under TART's prior; for noiseless linear
  classification, the weight scale of the logistic task, a weakly regularised fit) and at
  scikit-learn's default C = 1; the Laplace posterior predictive only for logistic labels
  (where the likelihood is the logistic one).
  """
  c_map = float(task.weight_scale) ** 2
  out = {
      f'logistic_regression (C={c_map:g})':
          _named(lambda x, t: logistic_regression_logits(x, t, c_map), True),
      'logistic_regression (C=1)': _named(lambda x, t: logistic_regression_logits(x, t, 1.0),
                                          True),
      'nearest_neighbour': _named(nearest_neighbour_logits, False),
      'averaging': _named(averaging_logits, False),
  }
  if task.label_model == 'logistic' and float(task.flip_prob) == 0.0:
    out[f'laplace (C={c_map:g})'] = _named(lambda x, t: laplace_logits(x, t, c_map), True)
  return out
