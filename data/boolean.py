"""In-context learning of Boolean functions (Bhattamishra et al. 2024, "Understanding In-Context
Learning in Transformers and LLMs by Learning to Learn Discrete Functions", ICLR).

A prompt holds `n_points` pairs (x_i, y_i = f(x_i)) of one function f: {-1, 1}^n -> {-1, 1}
drawn from a class (`task.function`). The layout is the regression tasks' (Garg et al.):
x_0, [y_0, 0, .., 0], x_1, ... read in linearly, a scalar read-out at every x position.

Classes (the constructions of the authors' code; weights w, labels y = sign(x.w - bias)):
  conjunction   each coordinate is a literal with probability literal_prob (x_j or NOT x_j,
                equally likely); y = +1 iff every literal holds (empty: always +1)
  disjunction   the same literals; y = +1 iff some literal holds (empty: always -1)
  sparse_parity a uniformly random set S of parity_size coordinates; y = +1 iff an odd number
                of the coordinates in S are +1 (Parity-(n, k))
  majority      S holds each coordinate with probability literal_prob; y = +1 iff more
                coordinates of S are +1 than -1 (ties and the empty set: -1)
  threshold     0-1 threshold functions: w in {-1, 0, 1}^n as the literals of a conjunction,
                bias uniform in {-b + 1/2, ..., b - 1/2}, b = threshold_bound
  halfspace     integer halfspaces: w uniform in {-weight_bound, ..., weight_bound}^n,
                bias 1/2

Inputs are uniform on {-1, 1}^n, except for conjunctions and disjunctions: under the uniform
distribution a conjunction of k literals is positive with probability 2^-k (almost never for
the ~8 literals of n = 28), so, as the authors do, each point is independently *planted* with
probability `planted_fraction` (0.3): its literal coordinates are overwritten to satisfy the
conjunction (a positive example) or to falsify every literal of the disjunction (a negative
one); the other coordinates stay uniform. `planted_fraction=0` gives uniform inputs.

For the exact Bayes-optimal baseline (baselines/boolean.py) a task enumerates its hypothesis
class with prior weights (`hypotheses`) and gives the input likelihood ratio that planting
adds (`input_log_likelihood`).
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from core import Batch, ModelIO, require
from data.base import Task, merge_task_config, register_task
from data.regression import interleave_points

Params = Dict[str, jax.Array]

FUNCTIONS = ('conjunction', 'disjunction', 'sparse_parity', 'majority', 'threshold',
             'halfspace')
PLANTED = ('conjunction', 'disjunction')   # classes whose inputs are planted
DEFAULTS = dict(
    function='conjunction',   # one of FUNCTIONS
    n_dims=28,                # input dimension n (the paper's n = 28)
    n_points=70,              # (x, y) pairs per prompt (the paper's prompts of 70 examples)
    literal_prob=0.3,         # P(coordinate in the function): conjunction, disjunction,
                              # majority, threshold (the authors' 0.3)
    planted_fraction=0.3,     # P(point planted): conjunction, disjunction (the authors' 0.3)
    parity_size=2,            # k of Parity-(n, k)
    threshold_bound=3,        # threshold: bias in {-b + 1/2, ..., b - 1/2}
    weight_bound=3,           # halfspace: weights in {-b, ..., b}
)
# Bayes by enumeration is offered up to this many hypotheses (baselines/boolean.py).
MAX_HYPOTHESES = 60_000


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_prob(value) -> bool:
  return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
          and 0.0 <= float(value) <= 1.0)


@register_task('boolean_functions')
class BooleanFunctions(Task):
  """Prompts of one Boolean function class; batch keys as the regression tasks'."""
  eval_family = 'boolean'
  default_objective = 'regression_mse'   # squared error on +-1 labels; the sign is the guess
  # logistic_bce: the read-out as the log-odds of y = +1 (targets_BxN = (y + 1) / 2).
  objectives = ('regression_mse', 'logistic_bce')
  icl_metric = 'accuracy'

  @classmethod
  def default_config(cls) -> dict:
    return dict(DEFAULTS)

  def __init__(self, config: Any):
    super().__init__(config)
    cfg = merge_task_config(self.name, DEFAULTS, config)
    require(cfg['function'] in FUNCTIONS, 'task.function', cfg['function'],
            f'one of {", ".join(FUNCTIONS)}')
    require(_is_int(cfg['n_dims']) and 1 <= cfg['n_dims'] <= 1024, 'task.n_dims',
            cfg['n_dims'], 'an integer in [1, 1024]')
    require(_is_int(cfg['n_points']) and cfg['n_points'] >= 1, 'task.n_points',
            cfg['n_points'], 'an integer >= 1')
    for key in ('literal_prob', 'planted_fraction'):
      require(_is_prob(cfg[key]), f'task.{key}', cfg[key], 'a number in [0, 1]')
    require(_is_int(cfg['parity_size']) and 1 <= cfg['parity_size'] <= cfg['n_dims'],
            'task.parity_size', cfg['parity_size'], f'an integer in [1, n_dims={cfg["n_dims"]}]')
    for key in ('threshold_bound', 'weight_bound'):
      require(_is_int(cfg[key]) and 1 <= cfg[key] <= 100, f'task.{key}', cfg[key],
              'an integer in [1, 100]')
    self.cfg = cfg
    self.function = cfg['function']
    self.n_dims = int(cfg['n_dims'])
    self.n_points = int(cfg['n_points'])
    self.literal_prob = float(cfg['literal_prob'])
    self.planted_fraction = float(cfg['planted_fraction']) if self.function in PLANTED else 0.0

  # ---- interface -----------------------------------------------------------------------

  def io(self) -> ModelIO:
    return ModelIO(input_kind='vectors', input_dim=self.n_dims, seq_len=2 * self.n_points,
                   output_dim=1)

  def draw_function(self, key: jax.Array) -> Params:
    """One function: {'w_D': weights (parity: the 0/1 mask of S), 'bias': scalar}."""
    n, p = self.n_dims, self.literal_prob
    k_in, k_sign, k_bias = jax.random.split(key, 3)
    if self.function == 'sparse_parity':
      support = jax.random.permutation(k_in, n)[:self.cfg['parity_size']]
      return {'w_D': jnp.zeros((n,)).at[support].set(1.0), 'bias': jnp.float32(0.0)}
    if self.function == 'halfspace':
      bound = self.cfg['weight_bound']
      w_D = jax.random.randint(k_in, (n,), -bound, bound + 1).astype(jnp.float32)
      return {'w_D': w_D, 'bias': jnp.float32(0.5)}
    in_D = jax.random.bernoulli(k_in, p, (n,)).astype(jnp.float32)
    if self.function == 'majority':
      return {'w_D': in_D, 'bias': jnp.float32(0.5)}
    w_D = in_D * jnp.where(jax.random.bernoulli(k_sign, 0.5, (n,)), 1.0, -1.0)
    size = jnp.sum(in_D)
    if self.function == 'conjunction':
      bias = size - 1.0          # x.w = |w| iff every literal holds, else <= |w| - 2
    elif self.function == 'disjunction':
      bias = 1.0 - size          # x.w = -|w| iff no literal holds, else >= 2 - |w|
    else:  # threshold
      bound = self.cfg['threshold_bound']
      bias = jax.random.randint(k_bias, (), -bound, bound).astype(jnp.float32) + 0.5
    return {'w_D': w_D, 'bias': bias}

  def labels(self, params: Params, xs___xD: jax.Array) -> jax.Array:
    """f(x) in {-1, 1} for one function's params and any leading axes of xs."""
    if self.function == 'sparse_parity':
      count = ((xs___xD + 1.0) * 0.5) @ params['w_D']
      return jnp.where(jnp.mod(jnp.round(count), 2.0) == 1.0, 1.0, -1.0)
    return jnp.where(xs___xD @ params['w_D'] - params['bias'] > 0, 1.0, -1.0)

  def sample_xs(self, key: jax.Array, params: Params, batch_size: int) -> jax.Array:
    """x_BxNxD: uniform on {-1, 1}^n, planted points for conjunctions / disjunctions."""
    k_x, k_plant = jax.random.split(key)
    shape = (batch_size, self.n_points, self.n_dims)
    xs_BxNxD = jnp.where(jax.random.bernoulli(k_x, 0.5, shape), 1.0, -1.0)
    if self.planted_fraction > 0:
      planted_BxN = jax.random.bernoulli(k_plant, self.planted_fraction, shape[:2])
      sign = 1.0 if self.function == 'conjunction' else -1.0
      w_Bx1xD = params['w_D'][:, None, :]
      literal_BxNxD = planted_BxN[..., None] & (w_Bx1xD != 0)
      xs_BxNxD = jnp.where(literal_BxNxD, sign * w_Bx1xD, xs_BxNxD)
    return xs_BxNxD

  def sample_with_functions(self, key: jax.Array, batch_size: int,
                            step: Any = 0) -> Tuple[Batch, Params]:
    del step
    k_fn, k_x = jax.random.split(key)
    params = jax.vmap(self.draw_function)(jax.random.split(k_fn, batch_size))
    xs_BxNxD = self.sample_xs(k_x, params, batch_size)
    ys_BxN = jax.vmap(self.labels)(params, xs_BxNxD)
    ys_BxN = ys_BxN.astype(jnp.float32)
    batch = {'xs_BxNxD': xs_BxNxD.astype(jnp.float32), 'ys_BxN': ys_BxN,
             'targets_BxN': (ys_BxN + 1.0) / 2.0,
             'point_mask_BxN': jnp.ones((batch_size, self.n_points), jnp.float32)}
    return batch, params

  def sample(self, key: jax.Array, batch_size: int, step: Any = 0) -> Batch:
    """{'xs_BxNxD', 'ys_BxN' (both +-1), 'targets_BxN' (y in {0, 1}), 'point_mask_BxN'}:
    pure and jittable."""
    return self.sample_with_functions(key, batch_size, step)[0]

  def model_inputs(self, batch: Batch) -> jax.Array:
    """features_Bx(2N)xD: x_0, [y_0, 0, .., 0], x_1, ... (the regression tasks' layout)."""
    return interleave_points(batch['xs_BxNxD'], batch['ys_BxN'])

  def predictions(self, outputs_BxTxO: jax.Array) -> jax.Array:
    """preds_BxN: the read-out at every x position; its sign is the predicted label."""
    return outputs_BxTxO[:, 0::2, 0]

  def logits(self, outputs_BxTxO: jax.Array) -> jax.Array:
    """logits_BxN: the same read-out, as the log-odds of y = +1 (objective logistic_bce)."""
    return self.predictions(outputs_BxTxO)

  def position_metrics(self, outputs_BxTxO, batch: Batch) -> Dict[str, jax.Array]:
    """Accuracy and squared error at each number of in-context examples."""
    preds_BxN = self.predictions(outputs_BxTxO)
    return {'accuracy': jnp.mean(accuracy_scores(preds_BxN, batch['ys_BxN']), axis=0),
            'error': jnp.mean(jnp.square(preds_BxN - batch['ys_BxN']), axis=0)}

  # ---- the hypothesis class, for the Bayes-optimal predictor ----------------------------

  def num_hypotheses(self) -> int:
    n = self.n_dims
    return {'conjunction': 3**n, 'disjunction': 3**n, 'threshold': 3**n * 2 *
            self.cfg['threshold_bound'], 'majority': 2**n,
            'sparse_parity': math.comb(n, self.cfg['parity_size']),
            'halfspace': (2 * self.cfg['weight_bound'] + 1)**n}[self.function]

  def hypotheses(self) -> Tuple[Params, np.ndarray]:
    """Every function of the class (params with leading axis M) and its log prior, log_prior_M.

    The prior is the sampler's: the same function drawn from `draw_function`'s distribution
    has probability exp(log_prior). Refuses classes of more than MAX_HYPOTHESES functions.
    """
    count = self.num_hypotheses()
    require(count <= MAX_HYPOTHESES, 'task.n_dims', self.n_dims,
            f'enumerating {self.function} at n_dims={self.n_dims} takes {count} hypotheses; '
            f'at most {MAX_HYPOTHESES}')
    n, p = self.n_dims, self.literal_prob
    with np.errstate(divide='ignore'):   # literal_prob 0 or 1: impossible functions get -inf
      log_out, log_in = np.log(1.0 - p), np.log(p)
    if self.function == 'sparse_parity':
      k = self.cfg['parity_size']
      w_MxD = np.zeros((count, n), np.float32)
      for m, subset in enumerate(itertools.combinations(range(n), k)):
        w_MxD[m, list(subset)] = 1.0
      return ({'w_D': w_MxD, 'bias': np.zeros(count, np.float32)},
              np.full(count, -math.log(count)))
    if self.function == 'halfspace':
      values = np.arange(-self.cfg['weight_bound'], self.cfg['weight_bound'] + 1)
      w_MxD = _product(values, n)
      return ({'w_D': w_MxD, 'bias': np.full(len(w_MxD), 0.5, np.float32)},
              np.full(len(w_MxD), -math.log(len(w_MxD))))
    if self.function == 'majority':
      w_MxD = _product(np.array([0.0, 1.0]), n)
      size_M = w_MxD.sum(1)
      return ({'w_D': w_MxD, 'bias': np.full(len(w_MxD), 0.5, np.float32)},
              _weighted(size_M, log_in, n, log_out))
    w_MxD = _product(np.array([0.0, 1.0, -1.0]), n)
    size_M = np.abs(w_MxD).sum(1)
    log_prior_M = _weighted(size_M, log_in - math.log(2.0), n, log_out)
    if self.function == 'conjunction':
      return {'w_D': w_MxD, 'bias': (size_M - 1.0).astype(np.float32)}, log_prior_M
    if self.function == 'disjunction':
      return {'w_D': w_MxD, 'bias': (1.0 - size_M).astype(np.float32)}, log_prior_M
    bound = self.cfg['threshold_bound']
    biases = np.arange(-bound, bound, dtype=np.float32) + 0.5
    w_all = np.repeat(w_MxD, len(biases), axis=0)
    bias_all = np.tile(biases, len(w_MxD))
    return ({'w_D': w_all, 'bias': bias_all},
            np.repeat(log_prior_M, len(biases)) - math.log(len(biases)))

  def input_log_likelihood(self, params: Params, labels___: jax.Array) -> jax.Array:
    """log p(x | f) - log 2^-n for points x with labels f(x) (any leading axes of labels,
    params broadcast against them): zero for uniform inputs; with planting,
    log(1 - r + r 2^|w|) where the point could be planted (conjunction: f(x) = +1,
    disjunction: f(x) = -1), log(1 - r) elsewhere."""
    if self.planted_fraction == 0:
      return jnp.zeros(jnp.shape(labels___), jnp.float32)
    r = self.planted_fraction
    size = jnp.sum(jnp.abs(params['w_D']), axis=-1)
    size = jnp.reshape(size, jnp.shape(size) + (1,) * (jnp.ndim(labels___) - jnp.ndim(size)))
    plantable = labels___ == (1.0 if self.function == 'conjunction' else -1.0)
    return jnp.where(plantable, jnp.log((1.0 - r) + r * jnp.exp2(size)),
                     jnp.log(jnp.float32(1.0 - r)))

  def describe(self) -> str:
    extra = {'sparse_parity': f', k={self.cfg["parity_size"]}',
             'threshold': f', bias bound {self.cfg["threshold_bound"]}',
             'halfspace': f', weights in +-{self.cfg["weight_bound"]}'}.get(self.function, '')
    inputs = (f'uniform inputs, {self.planted_fraction:g} planted' if self.planted_fraction
              else 'uniform inputs')
    return f'{self.function} (n={self.n_dims}{extra}; {inputs})'


def accuracy_scores(preds___, ys___):
  """1 where sign(pred) = y, 0 where it differs, 1/2 where pred = 0 (a fair coin's expected
  score: predictors say 0 when the examples leave the label undetermined)."""
  return jnp.where(preds___ == 0, 0.5, (preds___ * ys___ > 0).astype(jnp.float32))


def _product(values: np.ndarray, n: int) -> np.ndarray:
  """All len(values)^n vectors over `values`, first coordinate slowest, as float32 M x n."""
  grids = np.meshgrid(*([values] * n), indexing='ij')
  return np.stack([g.ravel() for g in grids], axis=1).astype(np.float32)


def _weighted(size_M: np.ndarray, log_in: float, n: int, log_out: float) -> np.ndarray:
  """sum of per-coordinate log prior weights: |w| coordinates in, n - |w| out (0 * -inf = 0)."""
  inside = np.where(size_M > 0, size_M * log_in, 0.0)
  outside = np.where(n - size_M > 0, (n - size_M) * log_out, 0.0)
  return inside + outside
