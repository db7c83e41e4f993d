"""Sequential predictors of piecewise-stationary categorical sources, batched in JAX.

The source (data/piecewise.py): symbols x_1 .. x_N over an alphabet of K symbols, cut into
segments at unobserved switch points; each segment draws its own symbol distribution
theta ~ Dirichlet(alpha, ..., alpha) and emits iid symbols from it. The switch points form a
renewal process given by a hazard by run length: after the r-th symbol of the current
segment, the next symbol starts a new segment with probability h(r), independently of
everything else.

  constant hazard    h(r) = h                (geometric segment lengths; Adams & MacKay 2007)
  'lin'              h(r) = 1 / (2 r)        (the switch prior of Willems 1996, the 'LIN'
                                              distribution of Genewein et al. 2023; its exact
                                              predictor is their live-and-die (LAD) predictor)

and one prior that is not a renewal process:

  'ptw'              the Partition Tree Weighting prior (Veness et al. 2013), Genewein et al.'s
                     main switch distribution: over the complete binary tree of depth
                     d = ceil(log2 N) on positions 0 .. 2^d - 1, every node is one segment with
                     probability 1/2 and splits into its two halves otherwise (a node of one
                     position never splits), so segments are dyadic intervals.

Every predictor returns probs_BxNxK: probs[b, n] is the predictive distribution of x_n
(0-based) given x_0 .. x_{n-1}, so probs[b, 0] is the prior predictive, uniform.

  bayes_predictor      the exact Bayes predictor of the source: for a hazard, Bayesian online
                       change-point detection (`bayes_changepoint`; Adams & MacKay 2007,
                       Fearnhead & Liu 2007), a filter over the run length r (symbols since the
                       last switch) with the Dirichlet-categorical predictive inside the run,
                       O(N^2 K) per sequence; for 'ptw', Partition Tree Weighting (`ptw`) with
                       the Dirichlet-categorical estimator at every node (KT at alpha = 1/2),
                       O(N K log N). Both are a lax.scan over positions.
  stationary           the Dirichlet(alpha) posterior predictive of one segment
                       (alpha = 1/2: Krichevsky-Trofimov; alpha = 1: Laplace), ignoring switches
  sliding_window       the same on the last `window` symbols only
"""
from __future__ import annotations

from typing import Any, Tuple

import jax
import jax.numpy as jnp

SWITCHES: Tuple[str, ...] = ('hazard', 'lin', 'ptw')


def hazard_by_run_length(switch: str, hazard: Any, max_run: int) -> jax.Array:
  """h_R[r - 1] = probability that a new segment starts after the r-th symbol of a segment,
  r = 1 .. max_run (`hazard` may be traced; unused for 'lin')."""
  run_R = jnp.arange(1, max_run + 1, dtype=jnp.float32)
  if switch == 'hazard':
    return jnp.full((max_run,), 1.0, jnp.float32) * jnp.asarray(hazard, jnp.float32)
  if switch == 'lin':
    return 0.5 / run_R
  raise ValueError(f'switch={switch!r} is not one of {", ".join(SWITCHES)}')


def _one_hot(symbols_BxN: jax.Array, num_symbols: int) -> jax.Array:
  return jax.nn.one_hot(symbols_BxN, num_symbols, dtype=jnp.float32)


def _counts_before(symbols_BxN: jax.Array, num_symbols: int) -> jax.Array:
  """counts[b, n, k] = #{i < n : x_i = k}, for n = 0 .. N (B x (N+1) x K)."""
  onehot_BxNxK = _one_hot(symbols_BxN, num_symbols)
  zeros_Bx1xK = jnp.zeros_like(onehot_BxNxK[:, :1])
  return jnp.concatenate([zeros_Bx1xK, jnp.cumsum(onehot_BxNxK, axis=1)], axis=1)


def stationary(symbols_BxN: jax.Array, num_symbols: int, concentration: Any) -> jax.Array:
  """(counts of x_<n + alpha) / (n + K alpha): the Bayes predictor when nothing switches."""
  counts_BxNxK = _counts_before(symbols_BxN, num_symbols)[:, :-1]
  alpha = jnp.asarray(concentration, jnp.float32)
  return (counts_BxNxK + alpha) / jnp.sum(counts_BxNxK + alpha, axis=-1, keepdims=True)


def sliding_window(symbols_BxN: jax.Array, num_symbols: int, concentration: Any,
                   window: int) -> jax.Array:
  """The Dirichlet(alpha) predictive on the last `window` symbols before each position."""
  counts_BxN1xK = _counts_before(symbols_BxN, num_symbols)
  num_positions = symbols_BxN.shape[1]
  positions = jnp.arange(num_positions)
  start_N = jnp.maximum(positions - window, 0)
  window_BxNxK = counts_BxN1xK[:, positions] - counts_BxN1xK[:, start_N]
  alpha = jnp.asarray(concentration, jnp.float32)
  return (window_BxNxK + alpha) / jnp.sum(window_BxNxK + alpha, axis=-1, keepdims=True)


def bayes_changepoint(symbols_BxN: jax.Array, num_symbols: int, concentration: Any,
                      switch: str, hazard: Any = 0.0) -> jax.Array:
  """Exact posterior predictive of the piecewise-stationary source (run-length filter).

  State after x_0 .. x_{n-1}: weights w_R over the run length r = 1 .. N (w[r - 1] =
  P(the current segment holds the last r symbols | x_<n)) and the symbol counts of those r
  symbols. Then
      P(x_n = k | x_<n) = sum_r w_r [(1 - h(r)) (c_r[k] + alpha) / (r + K alpha) + h(r) / K],
  and after observing x_n the run grows (r -> r + 1, weight w_r (1 - h(r)) pred_r(x_n)) or
  restarts (r = 1, weight sum_r w_r h(r) / K), normalised by P(x_n | x_<n). Before the first
  symbol every hypothesis restarts (h = 1), so probs[:, 0] is uniform. Weights are kept
  normalised in probability space (no underflow of the evidence).
  """
  batch, num_positions = symbols_BxN.shape
  alpha = jnp.asarray(concentration, jnp.float32)
  hazard_R = hazard_by_run_length(switch, hazard, num_positions)
  run_R = jnp.arange(1, num_positions + 1, dtype=jnp.float32)
  onehot_NxBxK = jnp.swapaxes(_one_hot(symbols_BxN, num_symbols), 0, 1)
  uniform = 1.0 / num_symbols

  def step(carry, inputs):
    weight_BxR, counts_BxRxK = carry
    onehot_BxK, first = inputs
    hazard_now_R = jnp.where(first, 1.0, hazard_R)
    grow_BxR = weight_BxR * (1.0 - hazard_now_R)
    restart_B = jnp.sum(weight_BxR * hazard_now_R, axis=1)
    pred_BxRxK = (counts_BxRxK + alpha) / (run_R[None, :, None] + num_symbols * alpha)
    probs_BxK = jnp.einsum('br,brk->bk', grow_BxR, pred_BxRxK) + restart_B[:, None] * uniform
    observed_BxR = jnp.einsum('brk,bk->br', pred_BxRxK, onehot_BxK)
    evidence_B = jnp.sum(probs_BxK * onehot_BxK, axis=1)
    new_weight_BxR = jnp.concatenate(
        [(restart_B * uniform)[:, None], (grow_BxR * observed_BxR)[:, :-1]], axis=1)
    new_weight_BxR = new_weight_BxR / evidence_B[:, None]
    new_counts_BxRxK = jnp.concatenate(
        [jnp.zeros_like(counts_BxRxK[:, :1]), counts_BxRxK[:, :-1]], axis=1) + onehot_BxK[:, None]
    return (new_weight_BxR, new_counts_BxRxK), probs_BxK

  weight_BxR = jnp.zeros((batch, num_positions), jnp.float32).at[:, 0].set(1.0)
  counts_BxRxK = jnp.zeros((batch, num_positions, num_symbols), jnp.float32)
  first_N = jnp.arange(num_positions) == 0
  _, probs_NxBxK = jax.lax.scan(step, (weight_BxR, counts_BxRxK), (onehot_NxBxK, first_N))
  return jnp.swapaxes(probs_NxBxK, 0, 1)


def log_loss(probs_BxNxK: jax.Array, symbols_BxN: jax.Array) -> jax.Array:
  """-log P(x_n) of each symbol under a predictor (B x N)."""
  picked = jnp.take_along_axis(probs_BxNxK, symbols_BxN[..., None], axis=-1)[..., 0]
  return -jnp.log(jnp.maximum(picked, 1e-30))


def cross_entropy(log_probs_BxNxK: jax.Array, params_BxNxK: jax.Array) -> jax.Array:
  """E_{x ~ theta_n}[-log P(x)]: expected log loss of each prediction under the true symbol
  distribution (B x N); minus the entropy of theta_n it is the KL regret to the oracle."""
  return -jnp.sum(params_BxNxK * jnp.maximum(log_probs_BxNxK, -1e30), axis=-1)


def entropy(params_BxNxK: jax.Array) -> jax.Array:
  """Entropy of each true symbol distribution (B x N), 0 log 0 = 0."""
  safe = jnp.where(params_BxNxK > 0, params_BxNxK, 1.0)
  return -jnp.sum(params_BxNxK * jnp.log(safe), axis=-1)


def ptw_depth(num_positions: int) -> int:
  """Depth of the smallest complete binary tree with at least `num_positions` leaves."""
  return max(int(num_positions) - 1, 0).bit_length()


def ptw(symbols_BxN: jax.Array, num_symbols: int, concentration: Any) -> jax.Array:
  """Partition Tree Weighting (Veness et al. 2013) over the tree of depth d = ptw_depth(N):

      PTW_j(x) = 1/2 E(x) + 1/2 PTW_{j-1}(left half of x) PTW_{j-1}(right half of x),
      PTW_0(x) = E(x),

  E the Dirichlet(alpha) marginal; an unobserved half contributes 1. The level-j node holding
  position t keeps its counts, its log E, the log PTW of its finished left child (b_j, 0 while
  t is in the left half) and its own log PTW on the symbols so far (w_j); w_d is the log
  marginal of the prefix, so P(x_t = k | x_<t) = exp(w_d with x_t = k - w_d before x_t).
  """
  batch, num_positions = symbols_BxN.shape
  depth = ptw_depth(num_positions)
  alpha = jnp.asarray(concentration, jnp.float32)
  sizes_J = 2 ** jnp.arange(depth + 1)
  half = jnp.log(0.5)
  onehot_NxBxK = jnp.swapaxes(_one_hot(symbols_BxN, num_symbols), 0, 1)

  def tree_values(log_e_BxJ, left_BxJ):
    """w_j for j = 0 .. d from the nodes' log E and their finished left children."""
    values = [log_e_BxJ[:, 0]]
    for j in range(1, depth + 1):
      values.append(jnp.logaddexp(half + log_e_BxJ[:, j], half + left_BxJ[:, j] + values[-1]))
    return jnp.stack(values, axis=1)

  def step(carry, inputs):
    counts_BxJxK, log_e_BxJ, left_BxJ, w_BxJ = carry
    onehot_BxK, t = inputs
    starts_J = (t % sizes_J) == 0                    # a new node begins at each such level
    # Entering the right half of a level-j node: its left child (level j-1) just finished.
    right_J = ((t // jnp.maximum(sizes_J // 2, 1)) % 2 == 1) & (jnp.arange(depth + 1) > 0)
    child_w_BxJ = jnp.concatenate([jnp.zeros_like(w_BxJ[:, :1]), w_BxJ[:, :-1]], axis=1)
    child_starts_J = jnp.concatenate([jnp.ones((1,), bool), starts_J[:-1]])
    left_BxJ = jnp.where(child_starts_J, jnp.where(right_J, child_w_BxJ, 0.0), left_BxJ)
    counts_BxJxK = jnp.where(starts_J[None, :, None], 0.0, counts_BxJxK)
    log_e_BxJ = jnp.where(starts_J, 0.0, log_e_BxJ)
    pred_BxJxK = (counts_BxJxK + alpha) / (
        jnp.sum(counts_BxJxK, axis=-1, keepdims=True) + num_symbols * alpha)
    # w_d with each candidate symbol appended (K tree updates), then the observed one.
    candidate_e_KxBxJ = log_e_BxJ[None] + jnp.log(jnp.moveaxis(pred_BxJxK, -1, 0))
    candidate_w_KxBxJ = jax.vmap(tree_values, in_axes=(0, None))(candidate_e_KxBxJ, left_BxJ)
    total_w_B = w_BxJ[:, -1]
    log_probs_BxK = jnp.moveaxis(candidate_w_KxBxJ[:, :, -1], 0, 1) - total_w_B[:, None]
    w_BxJ = jnp.einsum('kbj,bk->bj', candidate_w_KxBxJ, onehot_BxK)
    log_e_BxJ = log_e_BxJ + jnp.log(jnp.einsum('bjk,bk->bj', pred_BxJxK, onehot_BxK))
    counts_BxJxK = counts_BxJxK + onehot_BxK[:, None]
    return (counts_BxJxK, log_e_BxJ, left_BxJ, w_BxJ), jnp.exp(log_probs_BxK)

  init = (jnp.zeros((batch, depth + 1, num_symbols), jnp.float32),
          jnp.zeros((batch, depth + 1), jnp.float32), jnp.zeros((batch, depth + 1), jnp.float32),
          jnp.zeros((batch, depth + 1), jnp.float32))
  _, probs_NxBxK = jax.lax.scan(step, init, (onehot_NxBxK, jnp.arange(num_positions)))
  probs_BxNxK = jnp.swapaxes(probs_NxBxK, 0, 1)
  # Exact up to float rounding; renormalise so the result is a distribution.
  return probs_BxNxK / jnp.sum(probs_BxNxK, axis=-1, keepdims=True)


def bayes_predictor(symbols_BxN: jax.Array, num_symbols: int, concentration: Any,
                    switch: str, hazard: Any = 0.0) -> jax.Array:
  """The exact Bayes predictor of the source with switch prior `switch` (see the module)."""
  if switch == 'ptw':
    return ptw(symbols_BxN, num_symbols, concentration)
  return bayes_changepoint(symbols_BxN, num_symbols, concentration, switch, hazard)
