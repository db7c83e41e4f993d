"""Piecewise-stationary categorical sequences (Genewein et al. 2023, "Memory-Based
Meta-Learning on Non-Stationary Distributions").

A sequence is N symbols over an alphabet of K (K = 2: a Bernoulli source). Unobserved switch
points cut it into segments; each segment draws its symbol distribution
theta ~ Dirichlet(concentration, ..., concentration) and emits iid symbols from it. Switches
form a renewal process (`switch`):

  hazard   after every symbol a new segment starts with probability `hazard` (geometric
           segment lengths, mean 1 / hazard); hazard = 0 is a stationary source
  lin      after the r-th symbol of a segment a new segment starts with probability 1 / (2r)
           (Willems 1996; the 'LIN' distribution of Genewein et al., whose trajectory generator
           draws the switch with probability 0.5 / (t - t_c + 1))

or, not a renewal process,

  ptw      the Partition Tree Weighting prior, Genewein et al.'s main distribution: on the
           complete binary tree over positions 0 .. 2^d - 1 (d = ceil(log2 N)), the root is
           one segment with probability 1/2 and otherwise splits into its halves, each of which
           does the same recursively (single positions never split); the sequence is the first
           N positions. So a switch at position p (0-based) has probability 2^-(d - j + 1),
           with j - 1 the number of trailing zero bits of p.

The exact Bayes predictor (baselines/changepoint.py `bayes_predictor`) is the run-length
filter (Bayesian online change-point detection with the Dirichlet-categorical predictive) for
the two renewal priors and Partition Tree Weighting for 'ptw': the reference every model and
baseline is compared with. Genewein et al. use Dirichlet(1/2) (Beta(1/2, 1/2) for K = 2: the
KT estimator inside a segment).

Token ids: symbols 0 .. K-1, and K = <bos>, read only: the prompt is <bos> x_1 .. x_N, the
model's read-out has K outputs (a distribution over the symbols), and the 'next_token'
objective trains every symbol, the first included (predicted from <bos> alone).

Batch keys (B prompts, N = seq_len symbols, T = N + 1 tokens):
  tokens_BxT          int32    <bos> x_1 .. x_N
  loss_mask_BxT       float32  1 at every symbol (t >= 1)
  symbols_BxN         int32    x_1 .. x_N
  params_BxNxK        float32  the true distribution theta of each symbol's segment
  segment_start_BxN   int32    1 where a new segment starts (always at n = 0)

Splits (`sample_split`): 'in_distribution' (the training source) and 'stationary' (one segment
per sequence: the same prior over theta, no switches).
"""
from __future__ import annotations

import copy
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np

from baselines import changepoint
from core import Batch, ConfigError, ModelIO, require
from data.base import Task, merge_task_config, register_task

SPLITS = ('in_distribution', 'stationary')
DEFAULTS = dict(
    alphabet_size=2,       # K symbols (2: Bernoulli)
    seq_len=256,           # N symbols per sequence (the model reads N + 1 tokens)
    switch='hazard',       # hazard | lin | ptw
    hazard=0.01,           # switch probability after each symbol (switch='hazard' only)
    concentration=0.5,     # Dirichlet concentration of each segment's distribution (0.5: KT)
)


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
      value, (bool, np.bool_))


@register_task('piecewise_stationary')
class PiecewiseStationary(Task):
  """Next-symbol prediction on piecewise-stationary categorical sources."""
  eval_family = 'piecewise'
  default_objective = 'next_token'
  objectives = ('next_token',)
  per_seed_keys = ('hazard', 'concentration')
  icl_metric = 'loss'
  eval_splits = SPLITS

  @classmethod
  def default_config(cls) -> dict:
    return dict(DEFAULTS)

  def __init__(self, config: Any):
    super().__init__(config)
    cfg = merge_task_config('piecewise_stationary', DEFAULTS, config)
    require(_is_int(cfg['alphabet_size']) and 2 <= cfg['alphabet_size'] <= 4096,
            'task.alphabet_size', cfg['alphabet_size'], 'an integer in [2, 4096]')
    require(_is_int(cfg['seq_len']) and 1 <= cfg['seq_len'] <= 65536, 'task.seq_len',
            cfg['seq_len'], 'an integer in [1, 65536]')
    require(cfg['switch'] in changepoint.SWITCHES, 'task.switch', cfg['switch'],
            f'one of {", ".join(changepoint.SWITCHES)}')
    require(_is_number(cfg['hazard']) and 0.0 <= cfg['hazard'] <= 1.0, 'task.hazard',
            cfg['hazard'], 'a number in [0, 1]')
    require(_is_number(cfg['concentration']) and 0.0 < cfg['concentration'] < float('inf'),
            'task.concentration', cfg['concentration'], 'a finite number > 0')
    self.cfg = cfg
    self.num_symbols = int(cfg['alphabet_size'])
    self.num_positions = int(cfg['seq_len'])
    self.switch = str(cfg['switch'])
    self.hazard = float(cfg['hazard'])
    self.concentration = float(cfg['concentration'])
    self.bos_id = self.num_symbols
    self.seq_len = self.num_positions + 1

  def io(self) -> ModelIO:
    return ModelIO(input_kind='tokens', vocab_size=self.num_symbols + 1, seq_len=self.seq_len,
                   output_dim=self.num_symbols)

  def model_inputs(self, batch: Batch) -> jax.Array:
    return batch['tokens_BxT']

  def bind(self, values: Dict[str, Any]) -> 'PiecewiseStationary':
    """A copy reading per-seed (possibly traced) `hazard` / `concentration`."""
    bound = copy.copy(self)
    for key, value in values.items():
      if key not in self.per_seed_keys:
        raise ConfigError(f'task.{key} cannot vary across seeds: per-seed task keys of '
                          f'{self.name!r} are {", ".join(self.per_seed_keys)}')
      setattr(bound, key, value)
    return bound

  # ---- sampling ------------------------------------------------------------------------

  def _segment_starts(self, key: jax.Array, batch_size: int, split: str) -> jax.Array:
    """int32 B x N, 1 where a segment starts (n = 0 always)."""
    n = self.num_positions
    first_BxN = jnp.broadcast_to(jnp.arange(n) == 0, (batch_size, n))
    if split == 'stationary':
      return first_BxN.astype(jnp.int32)
    if self.switch == 'hazard':
      switch_BxN = jax.random.bernoulli(key, jnp.asarray(self.hazard, jnp.float32),
                                        (batch_size, n))
      return (first_BxN | switch_BxN).astype(jnp.int32)
    if self.switch == 'ptw':
      return self._ptw_starts(key, batch_size)
    # 'lin': the switch probability depends on the current segment's length.
    uniform_NxB = jax.random.uniform(key, (n, batch_size))

    def step(run_B, uniform_B):
      start_B = uniform_B < 0.5 / jnp.maximum(run_B, 1).astype(jnp.float32)
      start_B = start_B | (run_B == 0)
      return jnp.where(start_B, 1, run_B + 1), start_B

    _, start_NxB = jax.lax.scan(step, jnp.zeros((batch_size,), jnp.int32), uniform_NxB)
    return start_NxB.T.astype(jnp.int32)

  def _ptw_starts(self, key: jax.Array, batch_size: int) -> jax.Array:
    """Top-down over the tree: a node that is a segment of its parent's split splits with
    probability 1/2, putting a switch at its midpoint."""
    depth = changepoint.ptw_depth(self.num_positions)
    width = 2 ** depth
    start_BxW = jnp.zeros((batch_size, width), bool).at[:, 0].set(True)
    active_BxM = jnp.ones((batch_size, 1), bool)          # nodes of the current level
    for level, level_key in zip(range(depth, 0, -1), jax.random.split(key, max(depth, 1))):
      split_BxM = active_BxM & jax.random.bernoulli(level_key, 0.5, active_BxM.shape)
      midpoints = np.arange(width >> level) * (1 << level) + (1 << (level - 1))
      start_BxW = start_BxW.at[:, midpoints].set(split_BxM)
      active_BxM = jnp.repeat(split_BxM, 2, axis=1)
    return start_BxW[:, :self.num_positions].astype(jnp.int32)

  def sample_split(self, key: jax.Array, batch_size: int, split: str) -> Batch:
    """Sequences of one split ('in_distribution' or 'stationary'); jittable, `split` static."""
    if split not in SPLITS:
      raise ConfigError(f'split {split!r} is invalid: one of {", ".join(SPLITS)}')
    k_switch, k_params, k_symbols = jax.random.split(key, 3)
    n, k = self.num_positions, self.num_symbols
    start_BxN = self._segment_starts(k_switch, batch_size, split)
    segment_BxN = jnp.cumsum(start_BxN, axis=1) - 1
    alpha_K = jnp.full((k,), 1.0, jnp.float32) * jnp.asarray(self.concentration, jnp.float32)
    # One draw per possible segment (at most N); each symbol reads its segment's draw.
    theta_BxSxK = jax.random.dirichlet(k_params, alpha_K, (batch_size, n))
    params_BxNxK = jnp.take_along_axis(theta_BxSxK, segment_BxN[..., None], axis=1)
    symbols_BxN = jax.random.categorical(k_symbols, jnp.log(params_BxNxK)).astype(jnp.int32)
    bos_Bx1 = jnp.full((batch_size, 1), self.bos_id, jnp.int32)
    tokens_BxT = jnp.concatenate([bos_Bx1, symbols_BxN], axis=1)
    mask_BxT = jnp.broadcast_to((jnp.arange(n + 1) >= 1).astype(jnp.float32),
                                (batch_size, n + 1))
    return {'tokens_BxT': tokens_BxT, 'loss_mask_BxT': mask_BxT, 'symbols_BxN': symbols_BxN,
            'params_BxNxK': params_BxNxK.astype(jnp.float32), 'segment_start_BxN': start_BxN}

  def sample(self, key: jax.Array, batch_size: int, step: Any = 0) -> Batch:
    """Training sequences (the in_distribution split); `step` is unused."""
    del step
    return self.sample_split(key, batch_size, 'in_distribution')

  def split_description(self, split: str) -> str:
    return {'in_distribution': 'the training source',
            'stationary': 'one segment per sequence (no switches)'}[split]

  # ---- predictions and metrics -----------------------------------------------------------

  def symbol_log_probs(self, outputs_BxTxK: jax.Array) -> jax.Array:
    """The model's log predictive of x_1 .. x_N (B x N x K): read-outs at tokens 0 .. N-1."""
    logits = outputs_BxTxK[:, :self.num_positions].astype(jnp.float32)
    return jax.nn.log_softmax(logits, axis=-1)

  def bayes_probs(self, batch: Batch) -> jax.Array:
    """The exact Bayes predictive of the training source (B x N x K)."""
    return changepoint.bayes_predictor(batch['symbols_BxN'], self.num_symbols,
                                       self.concentration, self.switch, self.hazard)

  def position_metrics(self, outputs_BxTxK, batch: Batch) -> Dict[str, jax.Array]:
    """Per symbol position: the model's log loss ('loss', nats), and its expected log loss
    under the true distribution minus that of the Bayes predictor ('excess_over_bayes')."""
    log_probs_BxNxK = self.symbol_log_probs(outputs_BxTxK)
    symbols_BxN, params_BxNxK = batch['symbols_BxN'], batch['params_BxNxK']
    nll_BxN = -jnp.take_along_axis(log_probs_BxNxK, symbols_BxN[..., None], axis=-1)[..., 0]
    bayes_BxNxK = self.bayes_probs(batch)
    excess_BxN = (changepoint.cross_entropy(log_probs_BxNxK, params_BxNxK)
                  - changepoint.cross_entropy(jnp.log(bayes_BxNxK), params_BxNxK))
    return {'loss': jnp.mean(nll_BxN, 0), 'excess_over_bayes': jnp.mean(excess_BxN, 0)}
