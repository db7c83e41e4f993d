"""Classical in-context regression baselines (Garg et al. 2022, Sec. 3-4 and App. A).

Every baseline is `fn(xs_BxNxD, ys_BxN) -> preds_BxN`: `preds[:, i]` is the prediction for `y_i`
made from the prefix pairs (x_j, y_j), j < i, and the query x_i alone. With no examples (i = 0)
every baseline predicts 0, as Garg et al.'s do.

The JAX baselines solve all B x N prefix problems at once with static shapes: position i sees the
prompt with rows j >= i masked out (zeroed, or at infinite distance for nearest neighbours), or
exclusive prefix sums of x_j x_j^T and y_j x_j. They come back jitted (jitting them again is fine).
The greedy tree is scikit-learn's greedy learner (the tool Garg et al. use), so it is a plain numpy
function with a host loop over (prompt, position) fits.

Each returned fn carries two attributes the evaluator reads:
  fn.jittable: bool          False for the scikit-learn tree.
  fn.max_prompts: int|None   When set, fn evaluates only the first `max_prompts` prompts and
                             returns preds of shape (min(B, max_prompts), N); score them against
                             ys[:preds.shape[0]]. Used for the expensive baselines.

Measured cost on 2 shared CPU cores, 1000 prompts x 41 positions x d = 20, after compilation:
averaging / knn < 0.1 s, gd ~0.2 s, least_squares / ridge ~2-3 s (one SVD per prefix), lasso
~2.5 s (homotopy path), greedy_tree ~25 s (one scikit-learn fit per prompt and position),
relu2nn ~65 s (~0.065 s per prompt; grows as N^2 x hidden x steps). `get_baselines` therefore caps
the last two at DEFAULT_EXPENSIVE_MAX_PROMPTS prompts.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from core import ConfigError, require

BaselineFn = Callable[[Any, Any], Any]

# Default cap on prompts for the two expensive baselines when built by `get_baselines`.
DEFAULT_EXPENSIVE_MAX_PROMPTS = 256


def _mark(fn, *, jittable: bool, max_prompts: Optional[int]):
  fn.jittable = jittable
  fn.max_prompts = max_prompts
  return fn


def _require_number(name: str, option: str, value, allowed: str, ok) -> None:
  is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
      value, bool)
  require(is_number and ok(value), f'baselines.{name}.{option}', value, allowed)


def _require_int(name: str, option: str, value, minimum: int) -> None:
  is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
  require(is_int and value >= minimum, f'baselines.{name}.{option}', value,
          f'an int >= {minimum}')


def _require_max_prompts(name: str, max_prompts) -> None:
  if max_prompts is not None:
    _require_int(name, 'max_prompts', max_prompts, 1)


def _prefix_mask_NxN(num_points: int) -> jax.Array:
  """mask[i, j] = (j < i): the pairs that position i may use."""
  positions = jnp.arange(num_points)
  return positions[None, :] < positions[:, None]


def _masked_prefixes(xs_BxNxD, ys_BxN):
  """Per position i, the prompt with rows j >= i zeroed; axes (b, i, j[, d])."""
  mask_NxN = _prefix_mask_NxN(xs_BxNxD.shape[1])
  xs_BxNxNxD = jnp.where(mask_NxN[None, :, :, None], xs_BxNxD[:, None], 0.0)
  ys_BxNxN = jnp.where(mask_NxN[None], ys_BxN[:, None], 0.0)
  return xs_BxNxNxD, ys_BxNxN


def _exclusive_cumsum(values_BxN___):
  """sum_{j < i} values[:, j] along axis 1; the shift keeps row i free of pair i."""
  shifted = jnp.concatenate([jnp.zeros_like(values_BxN___[:, :1]), values_BxN___[:, :-1]], axis=1)
  return jnp.cumsum(shifted, axis=1)


def _mean_prefix_moments(xs_BxNxD, ys_BxN):
  """(A, b) of the mean squared loss 1/(2i) sum_{j<i} (x_j.w - y_j)^2 = w'Aw/2 - b'w + const.

  A_BxNxDxD = (1/i) sum_{j<i} x_j x_j^T, b_BxNxD = (1/i) sum_{j<i} y_j x_j (zero at i = 0).
  """
  outer_BxNxDxD = xs_BxNxD[..., :, None] * xs_BxNxD[..., None, :]
  gram_BxNxDxD = _exclusive_cumsum(outer_BxNxDxD)
  moment_BxNxD = _exclusive_cumsum(xs_BxNxD * ys_BxN[..., None])
  count_N = jnp.maximum(jnp.arange(xs_BxNxD.shape[1]), 1).astype(xs_BxNxD.dtype)
  return gram_BxNxDxD / count_N[:, None, None], moment_BxNxD / count_N[:, None]


def _zero_first(preds_BxN):
  """Position 0 has no examples: predict 0 (Garg et al.'s convention)."""
  return preds_BxN.at[:, 0].set(0.0)


# ----------------------------------------------------------------------------- linear estimators


def _spectral_ridge_weights(xs_BxNxD, ys_BxN, alpha: float):
  """Per prefix, argmin_w ||X w - y||^2 + alpha ||w||^2 (minimum norm when alpha = 0).

  Computed from the SVD X = U S V^T of the zero-masked prefix: w = V diag(s / (s^2 + alpha)) U^T y.
  Singular values below jnp.linalg.pinv's cutoff (10 max(N, D) eps s_max) are exact zeros in
  exact arithmetic (the masked rows, rank deficiency) and are dropped, for every alpha.
  """
  xs_BxNxNxD, ys_BxNxN = _masked_prefixes(xs_BxNxD, ys_BxN)
  u_BxNxNxK, s_BxNxK, vt_BxNxKxD = jnp.linalg.svd(xs_BxNxNxD, full_matrices=False)
  num_points, dim = xs_BxNxD.shape[1:]
  cutoff_BxNx1 = (10.0 * max(num_points, dim) * jnp.finfo(s_BxNxK.dtype).eps
                  * jnp.max(s_BxNxK, axis=-1, keepdims=True))
  keep_BxNxK = s_BxNxK > cutoff_BxNx1
  safe_s = jnp.where(keep_BxNxK, s_BxNxK, 1.0)
  filter_BxNxK = jnp.where(keep_BxNxK, safe_s / (safe_s * safe_s + alpha), 0.0)
  projected_BxNxK = jnp.einsum('bijk,bij->bik', u_BxNxNxK, ys_BxNxN)
  return jnp.einsum('bikd,bik->bid', vt_BxNxKxD, filter_BxNxK * projected_BxNxK)


def ridge(alpha: float = 0.0) -> BaselineFn:
  """Ridge regression w = (X^T X + alpha I)^{-1} X^T y on each prefix; alpha = 0 is least squares.

  The objective is the unnormalised ||Xw - y||^2 + alpha ||w||^2, so for y = x.w + N(0, s^2) noise
  and w ~ N(0, I) the Bayes-optimal (posterior-mean) choice is alpha = s^2.
  """
  _require_number('ridge', 'alpha', alpha, 'a number >= 0', lambda a: a >= 0)
  alpha = float(alpha)

  @jax.jit
  def fn(xs_BxNxD, ys_BxN):
    weights_BxNxD = _spectral_ridge_weights(xs_BxNxD, ys_BxN, alpha)
    return _zero_first(jnp.einsum('bid,bid->bi', weights_BxNxD, xs_BxNxD))

  return _mark(fn, jittable=True, max_prompts=None)


def least_squares() -> BaselineFn:
  """Ordinary least squares with the minimum-norm solution X^+ y (Garg et al.'s lstsq)."""
  return ridge(alpha=0.0)


def averaging() -> BaselineFn:
  """Garg et al.'s averaging estimator: w = (1/i) sum_{j<i} y_j x_j, prediction x_i . w."""

  @jax.jit
  def fn(xs_BxNxD, ys_BxN):
    _, moment_BxNxD = _mean_prefix_moments(xs_BxNxD, ys_BxN)
    return _zero_first(jnp.einsum('bid,bid->bi', moment_BxNxD, xs_BxNxD))

  return _mark(fn, jittable=True, max_prompts=None)


def gd(num_steps: int = 10, learning_rate: Optional[float] = None) -> BaselineFn:
  """`num_steps` steps of full-batch gradient descent from w = 0 (von Oswald et al. 2023).

  The loss is L(w) = 1/(2i) sum_{j<i} (x_j . w - y_j)^2, so the update is
  w <- w - lr (A w - b) with A, b the prefix means of x x^T and y x. One step with lr = 1 is
  exactly the averaging estimator. learning_rate=None uses lr = 1 / trace(A) per prefix
  (1/d for large prefixes of isotropic unit-variance x; trace(A) >= the largest Hessian
  eigenvalue, so no prefix diverges); a number is a fixed lr for every prefix, as in
  von Oswald et al., which diverges on short prefixes once lr > 2 / lambda_max (at i = 1,
  lambda_max = |x_0|^2 ~ d).
  """
  _require_int('gd', 'num_steps', num_steps, 0)
  if learning_rate is not None:
    _require_number('gd', 'learning_rate', learning_rate, 'a number > 0 or None (1/trace)',
                    lambda a: a > 0)
    learning_rate = float(learning_rate)
  num_steps = int(num_steps)

  @jax.jit
  def fn(xs_BxNxD, ys_BxN):
    a_BxNxDxD, b_BxNxD = _mean_prefix_moments(xs_BxNxD, ys_BxN)
    if learning_rate is None:
      trace_BxN = jnp.trace(a_BxNxDxD, axis1=-2, axis2=-1)
      lr_BxNx1 = jnp.where(trace_BxN > 0, 1.0 / jnp.where(trace_BxN > 0, trace_BxN, 1.0),
                           0.0)[..., None]
    else:
      lr_BxNx1 = learning_rate

    def step(_, w_BxNxD):
      gradient = jnp.einsum('bide,bie->bid', a_BxNxDxD, w_BxNxD) - b_BxNxD
      return w_BxNxD - lr_BxNx1 * gradient

    w_BxNxD = jax.lax.fori_loop(0, num_steps, step, jnp.zeros_like(b_BxNxD))
    return _zero_first(jnp.einsum('bid,bid->bi', w_BxNxD, xs_BxNxD))

  return _mark(fn, jittable=True, max_prompts=None)


def _soft_threshold(values, threshold):
  return jnp.sign(values) * jnp.maximum(jnp.abs(values) - threshold, 0.0)


def lasso_coordinate_descent(a_PxDxD, b_PxD, alpha: float, w_PxD=None, *, tol: float = 1e-6,
                             max_sweeps: int = 1000):
  """Minimises w'Aw/2 - b'w + alpha ||w||_1 for P problems at once by cyclic coordinate descent.

  With A = X^T X / n and b = X^T y / n this is scikit-learn's Lasso objective
  1/(2n) ||y - Xw||^2 + alpha ||w||_1 (fit_intercept=False), by scikit-learn's algorithm.
  Starts from w_PxD (zeros if None). Sweeps run until every problem's largest coordinate change in
  a sweep is <= tol * max|w| (scikit-learn's first stopping test) or `max_sweeps` is reached.
  Coordinates with A_jj = 0 (a feature that is zero on the whole prefix) are set to 0.
  Slow on its own for short, collinear prefixes (thousands of sweeps); `lasso_solve` uses it
  only to polish the homotopy solution.
  Returns (w_PxD, num_sweeps).
  """
  diag_PxD = jnp.diagonal(a_PxDxD, axis1=-2, axis2=-1)
  has_data_PxD = diag_PxD > 0
  safe_diag_PxD = jnp.where(has_data_PxD, diag_PxD, 1.0)
  dim = b_PxD.shape[-1]

  def sweep(w_PxD):
    # Recomputed each sweep so the running product never drifts from A w.
    aw_PxD = jnp.einsum('pde,pe->pd', a_PxDxD, w_PxD)

    def update(carry, j):
      w_PxD, aw_PxD, max_change_P = carry
      w_j = w_PxD[:, j]
      rho_P = b_PxD[:, j] - aw_PxD[:, j] + diag_PxD[:, j] * w_j
      new_j = jnp.where(has_data_PxD[:, j], _soft_threshold(rho_P, alpha) / safe_diag_PxD[:, j],
                        0.0)
      change_P = new_j - w_j
      w_PxD = w_PxD.at[:, j].set(new_j)
      aw_PxD = aw_PxD + change_P[:, None] * a_PxDxD[:, j, :]
      return (w_PxD, aw_PxD, jnp.maximum(max_change_P, jnp.abs(change_P))), None

    init = (w_PxD, aw_PxD, jnp.zeros(w_PxD.shape[:1], w_PxD.dtype))
    (w_PxD, _, max_change_P), _ = jax.lax.scan(update, init, jnp.arange(dim))
    return w_PxD, max_change_P

  def not_done(state):
    _, max_change_P, w_max_P, sweeps = state
    return jnp.any(max_change_P > tol * w_max_P) & (sweeps < max_sweeps)

  def body(state):
    w_PxD, _, _, sweeps = state
    w_PxD, max_change_P = sweep(w_PxD)
    return w_PxD, max_change_P, jnp.max(jnp.abs(w_PxD), axis=-1), sweeps + 1

  num_problems = b_PxD.shape[0]
  w0_PxD = jnp.zeros_like(b_PxD) if w_PxD is None else w_PxD
  init = (w0_PxD, jnp.full((num_problems,), jnp.inf, b_PxD.dtype),
          jnp.zeros((num_problems,), b_PxD.dtype), jnp.array(0, jnp.int32))
  w_PxD, _, _, sweeps = jax.lax.while_loop(not_done, body, init)
  return w_PxD, sweeps


_BOUNCE_MARGIN = 1e-4


def _embedded_active_matrix(a_PxDxD, active_PxD):
  """A_SS on the active block, the identity elsewhere (invertible iff A_SS is)."""
  both_PxDxD = active_PxD[:, :, None] & active_PxD[:, None, :]
  eye_DxD = jnp.eye(a_PxDxD.shape[-1], dtype=a_PxDxD.dtype)
  return (jnp.where(both_PxDxD, a_PxDxD, 0.0)
          + jnp.where(active_PxD, 0.0, 1.0)[:, :, None] * eye_DxD)


def lasso_homotopy(a_PxDxD, b_PxD, alpha: float, *, max_events: int):
  """Lasso by the homotopy / LARS-lasso path (Osborne et al. 2000; Efron et al. 2004), batched.

  Same objective as `lasso_coordinate_descent`. Follows the piecewise-linear solution path
  w(lam) from lam = max|b| down to alpha: on an active set S with signs s,
  w_S(lam) = A_SS^{-1} (b_S - lam s_S); an inactive j joins when |b_j - A_jS w_S(lam)| reaches
  lam, an active j leaves when w_j(lam) crosses 0. Each event re-solves A_SS (embedded as
  A_SS (+) I) from scratch: rank-one updates of its inverse drift too far in float32 on short,
  nearly rank-deficient prefixes. Exact up to rounding once the path reaches alpha (typically
  after ~2 events per active feature). A problem that runs out of `max_events`, or whose solve
  fails (a rank-deficient active set, only for non-generic data), keeps its last path point.
  Returns (w_PxD, finished_P, num_events).

  Accuracy is that of float32 with A = X^T X / n: at d = 20, N = 41 it matches scikit-learn
  (float64) to ~2e-5 at alpha = 0.1; on short prefixes with small alpha, where A_SS is nearly
  singular, errors reach ~1e-2 (alpha = 0.01) and occasionally more (alpha = 0.001). In float64
  (jax_enable_x64) it matches to ~1e-9.
  """
  num_problems, dim = b_PxD.shape
  dtype = b_PxD.dtype
  columns_D = jnp.arange(dim)

  def path_point(active_PxD, sign_PxD):
    """(u, v) with w_S(lam) = u - lam v on the active set, zero elsewhere."""
    rhs_PxDx2 = jnp.stack([jnp.where(active_PxD, b_PxD, 0.0), sign_PxD], axis=-1)
    solution_PxDx2 = jnp.linalg.solve(_embedded_active_matrix(a_PxDxD, active_PxD), rhs_PxDx2)
    return solution_PxDx2[..., 0], solution_PxDx2[..., 1]

  def body(state):
    active_PxD, sign_PxD, lam_P, done_P = (state['active'], state['sign'], state['lam'],
                                           state['done'])
    u_PxD, v_PxD = path_point(active_PxD, sign_PxD)
    solved_P = jnp.all(jnp.isfinite(u_PxD) & jnp.isfinite(v_PxD), axis=-1)
    # Correlations of inactive features along the path: c(lam) = p + lam q.
    p_PxD = b_PxD - jnp.einsum('pde,pe->pd', a_PxDxD, u_PxD)
    q_PxD = jnp.einsum('pde,pe->pd', a_PxDxD, v_PxD)
    lam_Px1 = lam_P[:, None]
    # The feature changed by the last event sits exactly on its boundary at lam; rounding could
    # make it bounce back at (nearly) the same lam, so its next event must lie a relative
    # _BOUNCE_MARGIN below lam. Genuine re-entries further down the path stay allowed.
    just_changed_PxD = ((columns_D[None] == state['last_dropped'][:, None])
                        | (columns_D[None] == state['last_added'][:, None]))
    limit_PxD = jnp.where(just_changed_PxD, lam_Px1 * (1.0 - _BOUNCE_MARGIN), lam_Px1)

    def candidate(numerator, denominator, allowed):
      ok = allowed & (jnp.abs(denominator) > 1e-12)
      value = numerator / jnp.where(ok, denominator, 1.0)
      return jnp.where(ok & (value > 0) & (value < limit_PxD), value, -jnp.inf)

    join_plus = candidate(p_PxD, 1.0 - q_PxD, ~active_PxD)
    join_minus = candidate(-p_PxD, 1.0 + q_PxD, ~active_PxD)
    join_PxD = jnp.maximum(join_plus, join_minus)
    drop_PxD = candidate(u_PxD, v_PxD, active_PxD)
    event_PxD = jnp.maximum(join_PxD, drop_PxD)
    j_P = jnp.argmax(event_PxD, axis=-1).astype(jnp.int32)
    lam_next_P = jnp.max(event_PxD, axis=-1)
    one_hot_PxD = columns_D[None] == j_P[:, None]
    is_join_P = jnp.any(one_hot_PxD & (join_PxD >= drop_PxD), axis=-1)
    join_sign_PxD = jnp.where(join_plus >= join_minus, 1.0, -1.0)

    finish_P = ~done_P & ((lam_next_P <= alpha) | ~solved_P)
    advance_P = ~done_P & ~finish_P
    w_final_PxD = jnp.where(solved_P[:, None], u_PxD - alpha * v_PxD, state['w'])
    new_active = jnp.where(one_hot_PxD, is_join_P[:, None], active_PxD)
    new_sign = jnp.where(one_hot_PxD, jnp.where(is_join_P[:, None], join_sign_PxD, 0.0), sign_PxD)
    adv_Px1 = advance_P[:, None]
    return {
        'active': jnp.where(adv_Px1, new_active, active_PxD),
        'sign': jnp.where(adv_Px1, new_sign, sign_PxD),
        'lam': jnp.where(advance_P, lam_next_P, lam_P),
        'done': done_P | finish_P,
        'w': jnp.where(finish_P[:, None], w_final_PxD, state['w']),
        'last_added': jnp.where(advance_P, jnp.where(is_join_P, j_P, -1), state['last_added']),
        'last_dropped': jnp.where(advance_P, jnp.where(is_join_P, -1, j_P),
                                  state['last_dropped']),
        'events': state['events'] + 1,
    }

  def not_done(state):
    return jnp.any(~state['done']) & (state['events'] < max_events)

  init = {
      'active': jnp.zeros((num_problems, dim), bool),
      'sign': jnp.zeros((num_problems, dim), dtype),
      'lam': jnp.full((num_problems,), jnp.inf, dtype),
      'done': jnp.zeros((num_problems,), bool),
      'w': jnp.zeros((num_problems, dim), dtype),
      'last_added': jnp.full((num_problems,), -1, jnp.int32),
      'last_dropped': jnp.full((num_problems,), -1, jnp.int32),
      'events': jnp.array(0, jnp.int32),
  }
  state = jax.lax.while_loop(not_done, body, init)
  # Problems that ran out of events: the current path point at lam = alpha.
  u_PxD, v_PxD = path_point(state['active'], state['sign'])
  w_PxD = jnp.where(state['done'][:, None], state['w'], u_PxD - alpha * v_PxD)
  w_PxD = jnp.where(jnp.isfinite(w_PxD), w_PxD, 0.0)
  return w_PxD, state['done'], state['events']


def lasso_solve(a_PxDxD, b_PxD, alpha: float, *, polish_sweeps: int = 10, tol: float = 1e-6,
                max_events: Optional[int] = None):
  """argmin_w w'Aw/2 - b'w + alpha ||w||_1 for P problems: the homotopy path, then at most
  `polish_sweeps` coordinate-descent sweeps from its end point. The sweeps never increase the
  objective; they matter only for the rare problem whose path stopped early."""
  dim = b_PxD.shape[-1]
  max_events = 4 * dim + 8 if max_events is None else max_events
  w_PxD, _, _ = lasso_homotopy(a_PxDxD, b_PxD, alpha, max_events=max_events)
  if polish_sweeps > 0:
    w_PxD, _ = lasso_coordinate_descent(a_PxDxD, b_PxD, alpha, w_PxD, tol=tol,
                                        max_sweeps=polish_sweeps)
  return w_PxD


def lasso(alpha: float = 0.1, polish_sweeps: int = 10) -> BaselineFn:
  """Lasso on each prefix with scikit-learn's Lasso(alpha, fit_intercept=False) objective,
  1/(2i) ||y - Xw||^2 + alpha ||w||_1 (Garg et al.'s sparse-regression baseline), solved for all
  prefixes at once by `lasso_solve`: the exact homotopy path to alpha, then `polish_sweeps`
  sweeps of coordinate descent. Plain coordinate descent (scikit-learn's solver) needs thousands
  of sweeps on short, collinear prefixes; the path needs ~2 events per active feature.
  """
  _require_number('lasso', 'alpha', alpha, 'a number > 0', lambda a: a > 0)
  _require_int('lasso', 'polish_sweeps', polish_sweeps, 0)
  alpha, polish_sweeps = float(alpha), int(polish_sweeps)

  @jax.jit
  def fn(xs_BxNxD, ys_BxN):
    a_BxNxDxD, b_BxNxD = _mean_prefix_moments(xs_BxNxD, ys_BxN)
    batch, num_points, dim = xs_BxNxD.shape
    w_PxD = lasso_solve(a_BxNxDxD.reshape(batch * num_points, dim, dim),
                        b_BxNxD.reshape(batch * num_points, dim), alpha,
                        polish_sweeps=polish_sweeps)
    w_BxNxD = w_PxD.reshape(batch, num_points, dim)
    return _zero_first(jnp.einsum('bid,bid->bi', w_BxNxD, xs_BxNxD))

  return _mark(fn, jittable=True, max_prompts=None)


# ------------------------------------------------------------------------------ nearest neighbours

KNN_WEIGHTS = ('uniform', 'distance')


def knn(k: int = 3, weights: str = 'uniform') -> BaselineFn:
  """k-nearest neighbours in Euclidean distance among the prefix (Garg et al.'s NNModel).

  Uses min(k, i) neighbours at position i. weights='uniform' (Garg et al.'s default, used for
  their 3-NN curves) averages their y; 'distance' weights by 1/distance, and a neighbour at
  distance 0 (an exact repeat of the query) takes all the weight.
  """
  _require_int('knn', 'k', k, 1)
  require(weights in KNN_WEIGHTS, 'baselines.knn.weights', weights, f'one of {KNN_WEIGHTS}')
  k = int(k)

  @jax.jit
  def fn(xs_BxNxD, ys_BxN):
    batch, num_points, _ = xs_BxNxD.shape
    diffs_BxNxNxD = xs_BxNxD[:, :, None, :] - xs_BxNxD[:, None, :, :]
    dist2_BxNxN = jnp.sum(diffs_BxNxNxD * diffs_BxNxNxD, axis=-1)
    dist2_BxNxN = jnp.where(_prefix_mask_NxN(num_points)[None], dist2_BxNxN, jnp.inf)
    neg_dist2_BxNxK, index_BxNxK = jax.lax.top_k(-dist2_BxNxN, min(k, num_points))
    valid_BxNxK = jnp.isfinite(neg_dist2_BxNxK)
    ys_BxNxN = jnp.broadcast_to(ys_BxN[:, None, :], (batch, num_points, num_points))
    neighbour_ys_BxNxK = jnp.take_along_axis(ys_BxNxN, index_BxNxK, axis=-1)
    if weights == 'uniform':
      weight_BxNxK = valid_BxNxK.astype(xs_BxNxD.dtype)
    else:
      dist_BxNxK = jnp.sqrt(jnp.where(valid_BxNxK, -neg_dist2_BxNxK, 1.0))
      exact_BxNxK = valid_BxNxK & (dist_BxNxK == 0)
      inverse_BxNxK = jnp.where(valid_BxNxK & ~exact_BxNxK,
                                1.0 / jnp.where(exact_BxNxK, 1.0, dist_BxNxK), 0.0)
      weight_BxNxK = jnp.where(jnp.any(exact_BxNxK, axis=-1, keepdims=True),
                               exact_BxNxK.astype(xs_BxNxD.dtype), inverse_BxNxK)
    total_BxN = jnp.sum(weight_BxNxK, axis=-1)
    preds_BxN = (jnp.sum(weight_BxNxK * jnp.where(valid_BxNxK, neighbour_ys_BxNxK, 0.0), axis=-1)
                 / jnp.where(total_BxN > 0, total_BxN, 1.0))
    return _zero_first(preds_BxN)

  return _mark(fn, jittable=True, max_prompts=None)


# ---------------------------------------------------------------------------- greedy tree learner


def greedy_tree(max_depth: Optional[int] = 4, use_sign: bool = False,
                max_prompts: Optional[int] = None, random_state: int = 0) -> BaselineFn:
  """scikit-learn's greedy (CART) DecisionTreeRegressor fitted on each prefix (numpy, not jittable).

  Garg et al. report max_depth=4 (the depth of their target trees) and unbounded depth
  (max_depth=None). use_sign=True fits on sign(x), their "greedy tree learning (w/ sign)" variant,
  which matches the task's splits at 0. Costs one fit per (prompt, position) on the host.
  """
  if max_depth is not None:
    _require_int('greedy_tree', 'max_depth', max_depth, 1)
  require(isinstance(use_sign, bool), 'baselines.greedy_tree.use_sign', use_sign, 'True or False')
  _require_max_prompts('greedy_tree', max_prompts)
  from sklearn.tree import DecisionTreeRegressor  # pylint: disable=g-import-not-at-top

  def fn(xs_BxNxD, ys_BxN):
    xs_BxNxD = np.asarray(xs_BxNxD, dtype=np.float64)[:max_prompts]
    ys_BxN = np.asarray(ys_BxN, dtype=np.float64)[:max_prompts]
    features_BxNxD = np.sign(xs_BxNxD) if use_sign else xs_BxNxD
    batch, num_points, _ = xs_BxNxD.shape
    preds_BxN = np.zeros((batch, num_points), np.float32)
    for b in range(batch):
      for i in range(1, num_points):
        regressor = DecisionTreeRegressor(max_depth=max_depth, random_state=random_state)
        regressor.fit(features_BxNxD[b, :i], ys_BxN[b, :i])
        preds_BxN[b, i] = regressor.predict(features_BxNxD[b, i:i + 1])[0]
    return preds_BxN

  return _mark(fn, jittable=False, max_prompts=max_prompts)


def xgboost_available() -> bool:
  """Whether `import xgboost` works here (it is not a requirement of this repository)."""
  try:
    import xgboost  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except Exception:  # pylint: disable=broad-except  (ImportError, or a broken native library)
    return False
  return True


def xgboost(max_prompts: Optional[int] = None) -> BaselineFn:
  """Gradient-boosted trees: xgboost.XGBRegressor() at xgboost's default parameters fitted on
  each prefix, Garg et al.'s second decision-tree baseline (their XGBoostModel constructs
  XGBRegressor() with no arguments). numpy, not jittable; one fit per (prompt, position).
  Needs the optional package xgboost (`get_baselines` leaves it out when it is missing).
  """
  _require_max_prompts('xgboost', max_prompts)
  import xgboost as xgb  # pylint: disable=g-import-not-at-top

  def fn(xs_BxNxD, ys_BxN):
    xs_BxNxD = np.asarray(xs_BxNxD, dtype=np.float64)[:max_prompts]
    ys_BxN = np.asarray(ys_BxN, dtype=np.float64)[:max_prompts]
    batch, num_points, _ = xs_BxNxD.shape
    preds_BxN = np.zeros((batch, num_points), np.float32)
    for b in range(batch):
      for i in range(1, num_points):
        regressor = xgb.XGBRegressor()
        regressor.fit(xs_BxNxD[b, :i], ys_BxN[b, :i])
        preds_BxN[b, i] = float(np.asarray(regressor.predict(xs_BxNxD[b, i:i + 1])).ravel()[0])
    return preds_BxN

  return _mark(fn, jittable=False, max_prompts=max_prompts)


# ------------------------------------------------------------------------ trained 2-layer ReLU net


def relu2nn_init(key: jax.Array, input_dim: int, hidden_size: int) -> Dict[str, jax.Array]:
  """PyTorch nn.Linear's default init (Garg et al.'s nets): U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  k1, k2, k3, k4 = jax.random.split(key, 4)
  bound_in, bound_hidden = input_dim ** -0.5, hidden_size ** -0.5
  uniform = lambda k, shape, bound: jax.random.uniform(k, shape, jnp.float32, -bound, bound)
  return {'w1_DxH': uniform(k1, (input_dim, hidden_size), bound_in),
          'b1_H': uniform(k2, (hidden_size,), bound_in),
          'w2_H': uniform(k3, (hidden_size,), bound_hidden),
          'b2': uniform(k4, (), bound_hidden)}


def relu2nn_apply(params: Dict[str, jax.Array], xs_MxD) -> jax.Array:
  """f(x) = w2 . relu(W1^T x + b1) + b2 for every row: ys_M."""
  hidden_MxH = jax.nn.relu(xs_MxD @ params['w1_DxH'] + params['b1_H'])
  return hidden_MxH @ params['w2_H'] + params['b2']


def relu2nn_fit(key: jax.Array, xs_MxD, ys_M, weights_M, *, hidden_size: int, num_steps: int,
                learning_rate: float):
  """Trains a fresh 2-layer ReLU net with full-batch Adam on the weighted mean squared error
  sum_m weights_m (f(x_m) - y_m)^2 / max(sum_m weights_m, 1) (0/1 weights select the examples).

  Returns (params, losses_S) with S = num_steps + 1: the loss before each step and at the end.
  """
  params = relu2nn_init(key, xs_MxD.shape[-1], hidden_size)
  total = jnp.maximum(jnp.sum(weights_M), 1.0)
  optimizer = optax.adam(learning_rate)

  def loss_fn(params):
    errors_M = relu2nn_apply(params, xs_MxD) - ys_M
    return jnp.sum(weights_M * errors_M * errors_M) / total

  def step(carry, _):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses_S = jax.lax.scan(step, (params, optimizer.init(params)), None,
                                       length=num_steps)
  return params, jnp.append(losses_S, loss_fn(params))


def relu2nn(hidden_size: int = 100, num_steps: int = 100, learning_rate: float = 5e-3,
            seed: int = 0, chunk_size: int = 8, max_prompts: Optional[int] = None) -> BaselineFn:
  """A 2-layer ReLU net trained from scratch on each prefix (Garg et al.'s GDModel baseline).

  Garg et al.'s settings are the defaults: hidden 100, Adam with learning rate 5e-3, 100 steps;
  their batch of 100 examples is the whole prefix at their prompt lengths, so training here is
  full batch. Each (prompt, position) net gets its own init from fold_in(key(seed), ...) of the
  prompt's index in the batch and the position. Prompts are processed `chunk_size` at a time
  (lax.map) to bound memory; all positions of a chunk train together (vmap).
  """
  _require_int('relu2nn', 'hidden_size', hidden_size, 1)
  _require_int('relu2nn', 'num_steps', num_steps, 0)
  _require_number('relu2nn', 'learning_rate', learning_rate, 'a number > 0', lambda a: a > 0)
  _require_int('relu2nn', 'seed', seed, 0)
  _require_int('relu2nn', 'chunk_size', chunk_size, 1)
  _require_max_prompts('relu2nn', max_prompts)
  fit = lambda key, xs, ys, weights: relu2nn_fit(
      key, xs, ys, weights, hidden_size=int(hidden_size), num_steps=int(num_steps),
      learning_rate=float(learning_rate))[0]

  def predict_prompt(key, xs_NxD, ys_N):
    num_points = xs_NxD.shape[0]
    weights_NxN = _prefix_mask_NxN(num_points).astype(xs_NxD.dtype)

    def at_position(position, weights_N, query_D):
      # Zeroing the unused pairs (not only their loss weight) keeps position i independent of
      # them even if they hold non-finite values.
      used_N = weights_N > 0
      params = fit(jax.random.fold_in(key, position), jnp.where(used_N[:, None], xs_NxD, 0.0),
                   jnp.where(used_N, ys_N, 0.0), weights_N)
      return relu2nn_apply(params, query_D[None])[0]

    preds_N = jax.vmap(at_position)(jnp.arange(num_points), weights_NxN, xs_NxD)
    return preds_N.at[0].set(0.0)

  @jax.jit
  def fn(xs_BxNxD, ys_BxN):
    xs_BxNxD, ys_BxN = xs_BxNxD[:max_prompts], ys_BxN[:max_prompts]
    base = jax.random.key(seed)
    keys_B = jax.vmap(lambda b: jax.random.fold_in(base, b))(jnp.arange(xs_BxNxD.shape[0]))
    return jax.lax.map(lambda args: predict_prompt(*args), (keys_B, xs_BxNxD, ys_BxN),
                       batch_size=int(chunk_size))

  return _mark(fn, jittable=True, max_prompts=max_prompts)


# -------------------------------------------------------------------------------------- registry

BASELINES: Dict[str, Callable[..., BaselineFn]] = {
    'least_squares': least_squares,
    'ridge': ridge,
    'lasso': lasso,
    'knn': knn,
    'averaging': averaging,
    'gd': gd,
    'greedy_tree': greedy_tree,
    'relu2nn': relu2nn,
}

# Baselines that need a package this repository does not require: name -> (module, constructor).
# `get_baselines` includes them only where the module imports.
OPTIONAL_BASELINES: Dict[str, Tuple[str, Callable[..., BaselineFn]]] = {
    'xgboost': ('xgboost', xgboost),
}

# Result names that are a registered baseline at other fixed options. Garg et al. report Lasso
# at several alphas; 'lasso' is alpha = 0.1 (options from config.eval.baselines.lasso), and
# 'lasso_0.01' shares lasso's options except alpha.
BASELINE_VARIANTS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    'lasso_0.01': ('lasso', {'alpha': 0.01}),
}

# Garg et al.'s choice of baselines per task family (plus ridge and GD for linear tasks).
FAMILY_BASELINES = {
    'linear': ('least_squares', 'ridge', 'knn', 'averaging', 'gd'),
    'sparse_linear': ('least_squares', 'ridge', 'knn', 'averaging', 'gd', 'lasso', 'lasso_0.01'),
    'quadratic': ('least_squares', 'knn', 'averaging', 'relu2nn'),
    'relu2nn': ('least_squares', 'knn', 'averaging', 'relu2nn'),
    'decision_tree': ('least_squares', 'knn', 'averaging', 'greedy_tree', 'xgboost'),
    'mixture': ('least_squares', 'ridge', 'lasso', 'lasso_0.01', 'knn', 'averaging'),
}

# Options `get_baselines` sets where the constructor's own default differs (None: computed from
# the task, e.g. ridge's alpha).
_GET_BASELINES_DEFAULTS = {
    'ridge': {'alpha': None},
    'greedy_tree': {'max_prompts': DEFAULT_EXPENSIVE_MAX_PROMPTS},
    'relu2nn': {'max_prompts': DEFAULT_EXPENSIVE_MAX_PROMPTS},
    'xgboost': {'max_prompts': DEFAULT_EXPENSIVE_MAX_PROMPTS},
}


def _constructors() -> Dict[str, Callable[..., BaselineFn]]:
  return {**BASELINES, **{name: ctor for name, (_, ctor) in OPTIONAL_BASELINES.items()}}


def _option_names(constructor) -> Tuple[str, ...]:
  code = constructor.__code__
  return code.co_varnames[:code.co_argcount]


def default_baselines_config():
  """`config.eval.baselines`: every baseline's options at the defaults `get_baselines` uses
  (declared, so that `--config.eval.baselines.<name>.<option>=...` is type-checked).

  Unset (None) options are computed: ridge's alpha from the task's noise, gd's learning rate
  from the prompt. max_prompts 0 means every prompt.
  """
  import inspect  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  placeholder = ml_collections.config_dict.placeholder
  section = {}
  for name, constructor in sorted(_constructors().items()):
    options = {}
    for option, parameter in inspect.signature(constructor).parameters.items():
      value = _GET_BASELINES_DEFAULTS.get(name, {}).get(option, parameter.default)
      if value is None:   # typed, so that a command-line override can set it
        kind = int if option in ('max_prompts', 'max_depth') else float
        value = placeholder(kind)
      options[option] = value
    section[name] = options
  return ml_collections.ConfigDict(section)


def task_family(task_name: str) -> str:
  """Maps a task name to a key of FAMILY_BASELINES.

  Accepts Garg et al.'s names (linear_regression, noisy_linear_regression,
  sparse_linear_regression, quadratic_regression, relu_2nn_regression, decision_tree) and short
  forms (linear, noisy_linear, sparse, sparse_linear, quadratic, relu2nn, tree).
  """
  name = str(task_name).lower().replace('-', '_')
  compact = name.replace('_', '')
  if 'mixture' in name:
    return 'mixture'
  if 'sparse' in name:
    return 'sparse_linear'
  if 'quadratic' in name:
    return 'quadratic'
  if 'relu' in name and '2nn' in compact:
    return 'relu2nn'
  if 'tree' in name:
    return 'decision_tree'
  if 'linear' in name:
    return 'linear'
  raise ConfigError(
      f'config.task.name={task_name!r} is invalid: get_baselines knows linear, noisy linear, '
      'sparse linear, quadratic, relu 2nn and decision tree regression tasks')


def _baselines_section(config):
  """config.eval.baselines (absent in configs written before it was declared: {})."""
  eval_section = getattr(config, 'eval', None)
  section = getattr(eval_section, 'baselines', None) if eval_section is not None else None
  if section is None:
    return {}
  return section.to_dict() if hasattr(section, 'to_dict') else dict(section)


def _checked_options(name: str, given: Dict[str, Any]) -> Dict[str, Any]:
  """Options of registered baseline `name` (defaults + `given`); unknown ones raise."""
  constructor = _constructors()[name]
  options = dict(_GET_BASELINES_DEFAULTS.get(name, {}))
  options.update(given)
  allowed = _option_names(constructor)
  for option in options:
    require(option in allowed, f'eval.baselines.{name}.{option}', options[option],
            f'unknown option; {name} takes {", ".join(allowed) or "no options"}')
  if options.get('max_prompts') == 0:
    options['max_prompts'] = None      # 0: every prompt
  return options


def validate_baselines_config(config) -> None:
  """Raises ConfigError for an unknown baseline or option, or a bad value, anywhere in
  config.eval.baselines (also for baselines the task does not use)."""
  section = _baselines_section(config)
  known = _constructors()
  for name, given in section.items():
    require(name in known, f'eval.baselines.{name}', '...',
            f'unknown baseline; known: {", ".join(sorted(known))}')
    options = _checked_options(name, dict(given or {}))
    if name in OPTIONAL_BASELINES and not _optional_available(name):
      continue
    if options.get('alpha', 0.0) is None:
      options.pop('alpha')   # computed from the task by get_baselines
    known[name](**options)   # the constructors check the values


def _optional_available(name: str) -> bool:
  return name != 'xgboost' or xgboost_available()


def dmmse(pool_w_MxD, noise_variance: float) -> BaselineFn:
  """The Bayes predictor of Raventós et al. (2023) for a finite pool of M linear tasks drawn
  uniformly: the posterior mean over the pool, w = sum_m p(m | prefix) w_m with
  p(m | prefix) proportional to exp(-sum_{j<i} (y_j - x_j.w_m)^2 / (2 noise_variance)).
  `pool_w_MxD` holds y_scale * w of every pool task (prediction 0 needs no pool at i = 0: the
  prior mean). The cost is B x N x M: fine for pools up to ~10^4 tasks at evaluation sizes."""
  pool_w_MxD = jnp.asarray(pool_w_MxD, jnp.float32)
  variance = max(float(noise_variance), 1e-6)

  @jax.jit
  def predict(xs_BxNxD, ys_BxN):
    preds_BxNxM = jnp.einsum('bnd,md->bnm', xs_BxNxD, pool_w_MxD)
    squared_BxNxM = jnp.square(ys_BxN[..., None] - preds_BxNxM)
    log_weights_BxNxM = -_exclusive_cumsum(squared_BxNxM) / (2.0 * variance)
    weights_BxNxM = jax.nn.softmax(log_weights_BxNxM, axis=-1)
    return jnp.sum(weights_BxNxM * preds_BxNxM, axis=-1)

  return _mark(predict, jittable=True, max_prompts=None)


# The Bayes predictor enumerates every support of every class: C(d, k) for k-sparse weights.
MAX_BAYES_SUPPORTS = 5000
# Noise variance the Bayes predictor uses for noiseless labels: the posterior for a vanishing
# noise level (supports that cannot interpolate the prefix get likelihood ~exp(-rss / 2e-4)).
NOISELESS_VARIANCE = 1e-4


def mixture_bayes(prior, n_dims: int, noise_variance: float) -> BaselineFn:
  """The Bayes-optimal (posterior-mean) predictor of a mixture of sparse-Gaussian linear classes
  (Panwar et al. 2024's DR + SR mixture), exactly, by enumerating supports.

  `prior`: one dict per class with 'weight', 'support_size' k (d for dense weights) and
  'variance' v: the class draws a support S uniformly among the C(d, k) k-subsets and
  w_S ~ N(0, v I_k), w = 0 off S; y = x.w + N(0, noise_variance). For the prefix (X, y) of
  position i, support S has marginal likelihood N(y; 0, v X_S X_S^T + s^2 I), evaluated through
  the k-dimensional identity
    -2 log N = n log(2 pi s^2) + log det(I + X_S^T X_S v / s^2)
               + (||y - X_S w_S||^2 + (s^2 / v) ||w_S||^2) / s^2,
  with w_S the ridge solution at alpha = s^2 / v (also the posterior mean on S). The prediction
  is sum_S p(S | prefix) x_i.w_S; p(S | prefix) ∝ p(S) N(y; ...). With one class of k = d this
  is ridge at alpha = s^2 / v. noise_variance 0 is replaced by NOISELESS_VARIANCE (the noiseless
  limit). The returned fn also has `.class_posterior(xs, ys) -> probs_BxNxC`.
  """
  require(isinstance(n_dims, (int, np.integer)) and n_dims >= 1, 'task.n_dims', n_dims,
          'an integer >= 1')
  classes = [c for c in prior if float(c['weight']) > 0]
  require(len(classes) > 0, 'task.weights', [c['weight'] for c in prior],
          'at least one class with a positive weight')
  import itertools  # pylint: disable=g-import-not-at-top
  import math  # pylint: disable=g-import-not-at-top
  masks, log_prior, alphas, class_index = [], [], [], []
  variance = max(float(noise_variance), NOISELESS_VARIANCE)
  total_weight = sum(float(c['weight']) for c in classes)
  for index, c in enumerate(classes):
    k = int(c['support_size'])
    count = math.comb(int(n_dims), k)
    require(count <= MAX_BAYES_SUPPORTS, 'task.sparsity', k,
            f'the Bayes predictor enumerates C(n_dims={n_dims}, {k}) = {count} supports; at most '
            f'{MAX_BAYES_SUPPORTS}')
    for support in itertools.combinations(range(int(n_dims)), k):
      mask = np.zeros(int(n_dims), np.float32)
      mask[list(support)] = 1.0
      masks.append(mask)
      log_prior.append(math.log(float(c['weight']) / total_weight) - math.log(count))
      alphas.append(variance / float(c['variance']))
      class_index.append(index)
  masks_SxD = jnp.asarray(np.stack(masks))
  log_prior_S = jnp.asarray(log_prior, jnp.float32)
  alpha_S = jnp.asarray(alphas, jnp.float32)
  one_hot_SxC = jax.nn.one_hot(jnp.asarray(class_index), len(classes))

  def posterior(xs_BxNxD, ys_BxN):
    num_points, dim = xs_BxNxD.shape[1:]
    gram_BxNxDxD = _exclusive_cumsum(xs_BxNxD[..., :, None] * xs_BxNxD[..., None, :])
    moment_BxNxD = _exclusive_cumsum(xs_BxNxD * ys_BxN[..., None])
    prefix_NxN = _prefix_mask_NxN(num_points)
    eye_DxD = jnp.eye(dim, dtype=xs_BxNxD.dtype)

    def one_support(args):
      mask_D, alpha = args
      a_BxNxDxD = gram_BxNxDxD * (mask_D[:, None] * mask_D[None, :]) + alpha * eye_DxD
      chol_BxNxDxD = jnp.linalg.cholesky(a_BxNxDxD)
      w_BxNxD = jax.scipy.linalg.cho_solve((chol_BxNxDxD, True),
                                           (moment_BxNxD * mask_D)[..., None])[..., 0]
      log_det_BxN = (2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_BxNxDxD, axis1=-2, axis2=-1)), -1)
                     - dim * jnp.log(alpha))
      # Residuals of the prefix pairs j < i under position i's weights, computed directly
      # (not from moments) so that float32 cancellation does not swamp a small noise level.
      fit_BxNxN = jnp.einsum('bjd,bid->bij', xs_BxNxD, w_BxNxD)
      rss_BxN = jnp.sum(jnp.where(prefix_NxN[None], (ys_BxN[:, None, :] - fit_BxNxN) ** 2, 0.0),
                        axis=-1)
      penalty_BxN = alpha * jnp.sum(w_BxNxD * w_BxNxD, axis=-1)
      log_like_BxN = -0.5 * (log_det_BxN + (rss_BxN + penalty_BxN) / variance)
      return log_like_BxN, jnp.einsum('bid,bid->bi', w_BxNxD, xs_BxNxD)

    log_like_SxBxN, preds_SxBxN = jax.lax.map(one_support, (masks_SxD, alpha_S))
    log_post_BxNxS = jnp.moveaxis(log_like_SxBxN, 0, -1) + log_prior_S
    probs_BxNxS = jax.nn.softmax(log_post_BxNxS, axis=-1)
    return probs_BxNxS, jnp.moveaxis(preds_SxBxN, 0, -1)

  @jax.jit
  def fn(xs_BxNxD, ys_BxN):
    probs_BxNxS, preds_BxNxS = posterior(xs_BxNxD, ys_BxN)
    return _zero_first(jnp.sum(probs_BxNxS * preds_BxNxS, axis=-1))

  @jax.jit
  def class_posterior(xs_BxNxD, ys_BxN):
    probs_BxNxS, _ = posterior(xs_BxNxD, ys_BxN)
    return probs_BxNxS @ one_hot_SxC

  fn.class_posterior = class_posterior
  return _mark(fn, jittable=True, max_prompts=None)


def _mixture_bayes_baselines(task_name: str, task_config) -> Dict[str, BaselineFn]:
  """For a mixture task: 'bayes' (the mixture's posterior mean) and, with more than one class,
  'bayes_<class>' (each class's own Bayes predictor, as if the prior were that class alone)."""
  if task_config is None or task_family(task_name) != 'mixture':
    return {}
  from data import get_task   # baselines may read data/ (never models/ or analysis/)
  task = get_task(task_config)
  prior = task.bayes_prior()
  noise_variance = float(task.noise_std) ** 2
  result = {'bayes': mixture_bayes(prior, task.n_dims, noise_variance)}
  if len(prior) > 1:
    for c in prior:
      result[f'bayes_{c["name"]}'] = mixture_bayes([dict(c, weight=1.0)], task.n_dims,
                                                   noise_variance)
  return result


def get_baselines(task_name: str, config) -> Dict[str, BaselineFn]:
  """The baselines worth comparing against on `task_name`: result name -> fn.

  Names: 'least_squares', 'ridge', 'lasso' (alpha 0.1), 'lasso_0.01', '<k>nn' ('3nn' by
  default), 'averaging', 'gd', 'greedy_tree', 'xgboost' (only where xgboost imports),
  'relu2nn'; for a mixture task also 'bayes', 'bayes_<class>' (`mixture_bayes`). Options
  come from `config.eval.baselines.<registry name>.<option>` when present
  (e.g. config.eval.baselines.gd.num_steps, config.eval.baselines.knn.k; declared by
  configs/common.py, see `default_baselines_config`). Defaults: ridge alpha =
  (config.task.noise_std / config.task.y_scale)^2, the posterior mean for y = y_scale w.x +
  noise with w ~ N(0, I) (equal to least squares when the task is noiseless); lasso alpha = 0.1
  (Garg et al.); greedy_tree max_depth = 4; max_prompts = DEFAULT_EXPENSIVE_MAX_PROMPTS for
  greedy_tree, xgboost and relu2nn (0 or None: all prompts). Unknown baselines or options raise
  ConfigError.
  """
  validate_baselines_config(config)
  task = getattr(config, 'task', None)
  noise_std = float(getattr(task, 'noise_std', 0.0) or 0.0)
  y_scale = float(getattr(task, 'y_scale', 1.0) or 1.0)
  section = _baselines_section(config)
  result = {}
  for result_name in FAMILY_BASELINES[task_family(task_name)]:
    name, fixed = BASELINE_VARIANTS.get(result_name, (result_name, {}))
    if name in OPTIONAL_BASELINES and not _optional_available(name):
      continue
    options = _checked_options(name, dict(section.get(name) or {}))
    options.update(fixed)
    if name == 'ridge' and options.get('alpha') is None:
      options['alpha'] = (noise_std / y_scale) ** 2
    if name == 'knn':
      result_name = f'{options.get("k", 3)}nn'
    result[result_name] = _constructors()[name](**options)
  pool = _linear_pool(task_name, task)
  if pool is not None:   # a finite pool of linear tasks: its Bayes predictor (Raventós et al.)
    result['dmmse'] = dmmse(y_scale * pool, noise_std ** 2)
  result.update(_mixture_bayes_baselines(task_name, task))   # mixture tasks: exact Bayes
  return result


def _linear_pool(task_name: str, task_config):
  """y-unscaled weights of a finite pool of linear tasks (num_tasks > 0), else None."""
  if task_config is None or task_family(task_name) != 'linear':
    return None
  if int(getattr(task_config, 'num_tasks', 0) or 0) <= 0:
    return None
  from data import get_task   # baselines may read data/ (never models/ or analysis/)
  return np.asarray(get_task(task_config).pool_functions()['w_D'])
