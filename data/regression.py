"""In-context regression tasks of Garg et al. (2022), "What can transformers learn in-context?".

A prompt holds `n_points` pairs (x_i, y_i = f(x_i)) of one function f drawn from a class
(linear, sparse linear, noisy linear, quadratic, 2-layer ReLU network, decision tree). The model
reads the pairs interleaved, x_0, y_0, x_1, y_1, ..., and at every x position predicts y_i
from x_i and the pairs before it.

Functions are either fresh for every prompt (`num_tasks=0`, Garg) or drawn uniformly from a
finite pool of `num_tasks` functions (Raventós et al. 2023, "Pretraining task diversity and
the emergence of non-Bayesian in-context learning for regression"). Pool function i is
`draw(fold_in(key(pool_seed), i))`, so the pool is fixed by the config, costs no memory and
is the same on every device.

Garg's curriculum (effective dimension and prompt length growing with the step) is applied
inside jit from a traced `step`: dimensions past the current one are zeroed, points past the
current length get `point_mask_BxN = 0`.

`sample_ood(key, batch_size, suite)` draws the out-of-distribution prompts Garg evaluates on
(see OOD_SUITES); analysis/regression_eval.py turns them into error curves.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from core import Batch, ConfigError, ModelIO, require
from data.base import Task, merge_task_config, register_task

Params = Dict[str, jax.Array]

# Out-of-distribution prompt families (Garg et al. 2022, Section 4 / their src/eval.py).
OOD_SUITES = (
    'in_distribution',    # the training distribution, curriculum finished
    'skewed_covariance',  # x ~ N(0, S), S = U diag(l) U^T, l_i ∝ 1/i^2, trace d, U random per prompt
    'scaled_x',           # every x multiplied by OOD_OPTIONS['x_factor']
    'scaled_y',           # every y multiplied by OOD_OPTIONS['y_factor']
    'noisy_labels',       # every y gets N(0, label_noise_std^2) noise (the query's too)
    'half_subspace',      # every x in a random d//2-dim subspace (variance d/(d//2) in it)
    'orthant',            # in-context x in one random orthant per prompt, query x unrestricted
    'opposite_orthant',   # in-context x in one random orthant, query x in the opposite one
    'orthogonal',         # query x orthogonal to all preceding in-context x (only i < d)
    'overlapping',        # query x is a copy of a uniformly chosen preceding in-context x
    'new_tasks',          # functions drawn fresh from the prior, never from the finite pool
                          # (the same as in_distribution when task.num_tasks = 0)
)
# Suites whose query x_i is not the in-context x_i of the longer prompts: each number of
# in-context examples i needs its own prompt (pairs < i, then the query at position i).
QUERY_SUITES = ('orthant', 'opposite_orthant', 'orthogonal', 'overlapping')
OOD_OPTIONS = dict(x_factor=2.0, y_factor=2.0, label_noise_std=1.0)

# Garg's covariance shape for skewed inputs: eigenvalues ∝ 1/i^2 (their scale matrix has 1/i).
def skewed_eigenvalues(n_dims: int) -> np.ndarray:
  """Eigenvalues l_i ∝ 1/i^2, i = 1..n_dims, normalised so that sum(l) = n_dims."""
  raw = 1.0 / np.arange(1, n_dims + 1, dtype=np.float64) ** 2
  return raw * n_dims / raw.sum()


COMMON_DEFAULTS = dict(
    n_dims=20,              # input dimension d
    n_points=41,            # (x, y) pairs per prompt; sequence length is 2 * n_points
    num_tasks=0,            # 0: a fresh function per prompt; k > 0: pool of k functions
    pool_seed=0,            # seed of the finite pool and of the fixed skewed covariance
    x_distribution='isotropic',  # 'isotropic' N(0, I) | 'skewed' N(0, S) with fixed S
    x_scale=1.0,            # x = x_scale * (draw from x_distribution)
    y_scale=1.0,            # y = y_scale * f(x) (+ label noise for the noisy task)
    curriculum=False,       # Garg's curriculum on dims and points (off for tiny runs)
    dims_start=5,
    dims_inc=1,
    dims_interval=2000,
    points_start=11,
    points_inc=2,
    points_interval=2000,
)
X_DISTRIBUTIONS = ('isotropic', 'skewed')


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def interleave_points(xs_BxNxD: jax.Array, ys_BxN: jax.Array) -> jax.Array:
  """features_Bx(2N)xD: x_0, [y_0, 0, .., 0], x_1, [y_1, 0, .., 0], ... (Garg et al.'s prompt
  layout, shared by every task whose prompts are (x, y) pairs with a scalar y)."""
  ys_BxNxD = jnp.zeros_like(xs_BxNxD).at[..., 0].set(ys_BxN)
  batch_size, num_points, n_dims = xs_BxNxD.shape
  return jnp.stack([xs_BxNxD, ys_BxNxD], axis=2).reshape(batch_size, 2 * num_points, n_dims)


def validate_curriculum(cfg) -> None:
  """Checks Garg's curriculum keys (`curriculum`, `{dims,points}_{start,inc,interval}`)."""
  require(isinstance(cfg['curriculum'], (bool, np.bool_)), 'task.curriculum',
          cfg['curriculum'], 'True or False')
  if cfg['curriculum']:
    for axis, end in (('dims', cfg['n_dims']), ('points', cfg['n_points'])):
      start = cfg[f'{axis}_start']
      require(_is_int(start) and 1 <= start <= end, f'task.{axis}_start', start,
              f'an integer in [1, n_{axis}={end}]')
      inc = cfg[f'{axis}_inc']
      require(_is_int(inc) and inc >= 0, f'task.{axis}_inc', inc, 'an integer >= 0')
      interval = cfg[f'{axis}_interval']
      require(_is_int(interval) and interval >= 1, f'task.{axis}_interval', interval,
              'an integer >= 1')


def curriculum_state(cfg, n_dims: int, n_points: int, step: Any) -> Tuple[jax.Array, jax.Array]:
  """(effective dims, effective points) at `step` (traced int ok) of Garg's staircase."""
  if not cfg['curriculum']:
    return jnp.int32(n_dims), jnp.int32(n_points)
  step = jnp.maximum(jnp.asarray(step, jnp.int32), 0)
  dims = cfg['dims_start'] + cfg['dims_inc'] * (step // cfg['dims_interval'])
  points = cfg['points_start'] + cfg['points_inc'] * (step // cfg['points_interval'])
  return jnp.minimum(dims, n_dims), jnp.minimum(points, n_points)


def _random_orthonormal_BxDxD(key: jax.Array, batch_size: int, n_dims: int) -> jax.Array:
  """Haar-distributed orthogonal matrices (QR of a Gaussian with the sign of diag(R) fixed)."""
  gauss_BxDxD = jax.random.normal(key, (batch_size, n_dims, n_dims))
  q_BxDxD, r_BxDxD = jnp.linalg.qr(gauss_BxDxD)
  signs_BxD = jnp.sign(jnp.diagonal(r_BxDxD, axis1=1, axis2=2))
  return q_BxDxD * jnp.where(signs_BxD == 0, 1.0, signs_BxD)[:, None, :]


class RegressionTask(Task):
  """Base of Garg's function classes. Subclasses define one function's parameters and value.

  Subclass hooks (single function, vmapped over the batch):
    _draw_function(key) -> params           parameters of one function f
    _evaluate_one(params, xs_NxD) -> ys_N   f at every point, before y_scale
  """
  eval_family = 'regression'
  default_objective = 'regression_mse'
  objectives = ('regression_mse',)
  icl_metric = 'error'
  # Scalars that change no shapes: a vmapped run may give each seed its own value.
  per_seed_keys = ('pool_seed', 'x_scale', 'y_scale')
  extra_defaults: Dict[str, Any] = {}

  @classmethod
  def default_config(cls) -> dict:
    return {**COMMON_DEFAULTS, **cls.extra_defaults}

  def __init__(self, config: Any):
    super().__init__(config)
    cfg = merge_task_config(self.name, self.default_config(), config)
    self.cfg = cfg
    self._validate_common(cfg)
    self._validate(cfg)
    self.n_dims = int(cfg['n_dims'])
    self.n_points = int(cfg['n_points'])
    self.num_tasks = int(cfg['num_tasks'])
    self.x_scale = float(cfg['x_scale'])
    self.y_scale = float(cfg['y_scale'])
    self._pool_key = jax.random.key(int(cfg['pool_seed']))
    # The training distribution's skewed covariance is part of the task: fixed by pool_seed.
    self._x_transform_DxD = None
    if cfg['x_distribution'] == 'skewed':
      rng = np.random.default_rng([int(cfg['pool_seed']), 1])
      basis_DxD, _ = np.linalg.qr(rng.standard_normal((self.n_dims, self.n_dims)))
      root_D = np.sqrt(skewed_eigenvalues(self.n_dims))
      # x = z @ A^T with A = U diag(sqrt(l)) has covariance U diag(l) U^T.
      self._x_transform_DxD = np.asarray(basis_DxD * root_D[None, :], np.float32)

  # ---- configuration -------------------------------------------------------------------

  def _validate_common(self, cfg: dict) -> None:
    require(_is_int(cfg['n_dims']) and cfg['n_dims'] >= 1, 'task.n_dims', cfg['n_dims'],
            'an integer >= 1')
    require(_is_int(cfg['n_points']) and cfg['n_points'] >= 1, 'task.n_points',
            cfg['n_points'], 'an integer >= 1')
    require(_is_int(cfg['num_tasks']) and 0 <= cfg['num_tasks'] < 2**31, 'task.num_tasks',
            cfg['num_tasks'], 'an integer >= 0 (0 = a fresh function per prompt)')
    require(_is_int(cfg['pool_seed']) and cfg['pool_seed'] >= 0, 'task.pool_seed',
            cfg['pool_seed'], 'an integer >= 0')
    require(cfg['x_distribution'] in X_DISTRIBUTIONS, 'task.x_distribution',
            cfg['x_distribution'], f'one of {", ".join(X_DISTRIBUTIONS)}')
    for key in ('x_scale', 'y_scale'):
      require(_is_number(cfg[key]) and math.isfinite(cfg[key]) and cfg[key] > 0, f'task.{key}',
              cfg[key], 'a finite number > 0')
    validate_curriculum(cfg)

  def _validate(self, cfg: dict) -> None:
    """Per-class keys; overridden by subclasses that have any."""

  # ---- interface -----------------------------------------------------------------------

  def bind(self, values: Dict[str, Any]) -> 'RegressionTask':
    """A copy reading per-seed (possibly traced) values of `per_seed_keys`."""
    bound = copy.copy(self)
    for key, value in values.items():
      if key not in self.per_seed_keys:
        raise ConfigError(f'task.{key} cannot vary across seeds: per-seed task keys of '
                          f'{self.name!r} are {", ".join(self.per_seed_keys)}')
      if key == 'pool_seed':
        if self._x_transform_DxD is not None:
          raise ConfigError('task.pool_seed cannot vary across seeds with '
                            'x_distribution=skewed (the covariance is built on the host)')
        bound._pool_key = jax.random.key(value)
      else:
        setattr(bound, key, value)
    return bound

  def position_metrics(self, outputs_BxTxO, batch: Batch) -> Dict[str, jax.Array]:
    """Normalised squared error at each number of in-context examples (Garg's curve)."""
    errors_BxN = jnp.square(self.predictions(outputs_BxTxO) - batch['ys_BxN'])
    return {'error': jnp.mean(errors_BxN, axis=0) / self.error_normaliser()}

  def io(self) -> ModelIO:
    return ModelIO(input_kind='vectors', input_dim=self.n_dims, seq_len=2 * self.n_points,
                   output_dim=1)

  def error_normaliser(self) -> float:
    """Garg's normalisation of squared errors: E[y^2] of the standard prompt (here d)."""
    return float(self.n_dims)

  def curriculum_state(self, step: Any) -> Tuple[jax.Array, jax.Array]:
    """(effective dims, effective points) at `step` (traced int ok): Garg's staircase."""
    return curriculum_state(self.cfg, self.n_dims, self.n_points, step)

  def sample_functions(self, key: jax.Array, batch_size: int, fresh: bool = False) -> Params:
    """Parameters of `batch_size` functions (leading axis B): fresh (always with `fresh`), or
    picked uniformly from the finite pool."""
    if self.num_tasks == 0 or fresh:
      keys_B = jax.random.split(key, batch_size)
    else:
      index_B = jax.random.randint(key, (batch_size,), 0, self.num_tasks)
      keys_B = jax.vmap(lambda i: jax.random.fold_in(self._pool_key, i))(index_B)
    return jax.vmap(self._draw_function)(keys_B)

  def pool_functions(self) -> Params:
    """All functions of the finite pool (leading axis num_tasks); for inspection and tests."""
    require(self.num_tasks > 0, 'task.num_tasks', self.num_tasks, 'a pool needs num_tasks > 0')
    keys = jax.vmap(lambda i: jax.random.fold_in(self._pool_key, i))(
        jnp.arange(self.num_tasks))
    return jax.vmap(self._draw_function)(keys)

  def evaluate(self, params: Params, xs_BxNxD: jax.Array) -> jax.Array:
    """Noise-free labels y_scale * f_b(x_bn) for every prompt b and point n."""
    return self.y_scale * jax.vmap(self._evaluate_one)(params, xs_BxNxD)

  def sample_xs(self, key: jax.Array, batch_size: int) -> jax.Array:
    """x_BxNxD from the task's input distribution (no curriculum)."""
    z_BxNxD = jax.random.normal(key, (batch_size, self.n_points, self.n_dims))
    if self._x_transform_DxD is not None:
      z_BxNxD = z_BxNxD @ jnp.asarray(self._x_transform_DxD).T
    return self.x_scale * z_BxNxD

  def label_noise(self, key: jax.Array, shape) -> jax.Array:
    """Noise the task itself adds to labels (zero except for the noisy task)."""
    del key
    return jnp.zeros(shape, jnp.float32)

  def sample_with_functions(self, key: jax.Array, batch_size: int,
                            step: Any = 0) -> Tuple[Batch, Params]:
    """A batch (see `sample`) together with the parameters of its functions."""
    k_fn, k_x, k_noise, _ = jax.random.split(key, 4)
    params = self.sample_functions(k_fn, batch_size)
    xs_BxNxD = self.sample_xs(k_x, batch_size)
    dims, points = self.curriculum_state(step)
    # Garg's curriculum zeroes the trailing coordinates rather than changing shapes.
    xs_BxNxD = xs_BxNxD * (jnp.arange(self.n_dims) < dims).astype(jnp.float32)
    ys_BxN = self.evaluate(params, xs_BxNxD) + self.label_noise(k_noise, xs_BxNxD.shape[:2])
    mask_N = (jnp.arange(self.n_points) < points).astype(jnp.float32)
    batch = {
        'xs_BxNxD': xs_BxNxD.astype(jnp.float32),
        'ys_BxN': ys_BxN.astype(jnp.float32),
        'point_mask_BxN': jnp.broadcast_to(mask_N, (batch_size, self.n_points)),
    }
    return batch, params

  def sample(self, key: jax.Array, batch_size: int, step: Any = 0) -> Batch:
    """{'xs_BxNxD', 'ys_BxN', 'point_mask_BxN'}: a pure, jittable function of key and step."""
    return self.sample_with_functions(key, batch_size, step)[0]

  def model_inputs(self, batch: Batch) -> jax.Array:
    """features_Bx(2N)xD: x_0, [y_0, 0, .., 0], x_1, [y_1, 0, .., 0], ... (Garg's layout)."""
    return interleave_points(batch['xs_BxNxD'], batch['ys_BxN'])

  def predictions(self, outputs_BxTxO: jax.Array) -> jax.Array:
    """preds_BxN: read-out at every x position (the guess of y_i from x_i and pairs < i)."""
    return outputs_BxTxO[:, 0::2, 0]

  # ---- out-of-distribution prompts -----------------------------------------------------

  def ood_positions(self, suite: str) -> int:
    """How many numbers of in-context examples (0..P-1) a suite is defined for."""
    _check_suite(suite)
    if suite == 'orthogonal':
      return min(self.n_points, self.n_dims)  # no direction is left once i >= d
    return self.n_points

  def sample_ood(self, key: jax.Array, batch_size: int, suite: str) -> Batch:
    """Prompts of one OOD suite; see `sample_ood_with_functions`."""
    return self.sample_ood_with_functions(key, batch_size, suite)[0]

  def sample_ood_with_functions(self, key: jax.Array, batch_size: int,
                                suite: str) -> Tuple[Batch, Params]:
    """(batch, function parameters) of one OOD suite, curriculum finished (full dims, length).

    The batch has the keys of `sample`; suites in QUERY_SUITES also return 'query_xs_BxNxD' and
    'query_ys_BxN': the query for i in-context examples is query_xs[:, i] (label query_ys),
    which replaces x_i in a prompt otherwise made of xs/ys. The function and in-context x's
    use the same randomness as `sample(key, ...)`, so e.g. 'scaled_x' is exactly 2 * xs of
    'in_distribution' under the same key. Jittable with `suite` static.
    """
    _check_suite(suite)
    k_fn, k_x, k_noise, k_suite = jax.random.split(key, 4)
    params = self.sample_functions(k_fn, batch_size, fresh=(suite == 'new_tasks'))
    shape = (batch_size, self.n_points, self.n_dims)
    xs_BxNxD = self.sample_xs(k_x, batch_size)
    y_factor = OOD_OPTIONS['y_factor'] if suite == 'scaled_y' else 1.0

    if suite == 'skewed_covariance':
      basis_BxDxD = _random_orthonormal_BxDxD(k_suite, batch_size, self.n_dims)
      root_D = jnp.asarray(np.sqrt(skewed_eigenvalues(self.n_dims)), jnp.float32)
      z_BxNxD = jax.random.normal(k_x, shape)
      # x = (U diag(sqrt l)) z per prompt: covariance U diag(l) U^T.
      xs_BxNxD = self.x_scale * jnp.einsum('bde,bne->bnd', basis_BxDxD * root_D, z_BxNxD)
    elif suite == 'half_subspace':
      half = max(self.n_dims // 2, 1)
      basis_BxDxH = _random_orthonormal_BxDxD(k_suite, batch_size, self.n_dims)[..., :half]
      z_BxNxH = jax.random.normal(k_x, shape[:2] + (half,))
      # Variance d/half inside the subspace keeps E|x|^2 = d, as Garg's normalised scale.
      xs_BxNxD = (self.x_scale * math.sqrt(self.n_dims / half) *
                  jnp.einsum('bdh,bnh->bnd', basis_BxDxH, z_BxNxH))
    elif suite == 'scaled_x':
      xs_BxNxD = OOD_OPTIONS['x_factor'] * xs_BxNxD

    query_xs_BxNxD = None
    if suite in ('orthant', 'opposite_orthant'):
      pattern_Bx1xD = jnp.where(jax.random.bernoulli(k_suite, 0.5, (batch_size, 1, self.n_dims)),
                                1.0, -1.0)
      query_xs_BxNxD = xs_BxNxD if suite == 'orthant' else -jnp.abs(xs_BxNxD) * pattern_Bx1xD
      xs_BxNxD = jnp.abs(xs_BxNxD) * pattern_Bx1xD
    elif suite == 'orthogonal':
      query_xs_BxNxD = _orthogonal_queries(xs_BxNxD)
    elif suite == 'overlapping':
      # query i is x_j with j uniform in [0, i) (query 0 is x_0 itself, as Garg).
      u_BxN = jax.random.uniform(k_suite, shape[:2])
      source_BxN = jnp.floor(u_BxN * jnp.arange(self.n_points)).astype(jnp.int32)
      query_xs_BxNxD = jnp.take_along_axis(xs_BxNxD, source_BxN[..., None], axis=1)

    k_noise_query = jax.random.fold_in(k_noise, 1)
    k_suite_query = jax.random.fold_in(k_suite, 1)

    def labels(xs, k_task_noise, k_extra_noise):
      ys = y_factor * self.evaluate(params, xs) + self.label_noise(k_task_noise, xs.shape[:2])
      if suite == 'noisy_labels':
        ys = ys + OOD_OPTIONS['label_noise_std'] * jax.random.normal(k_extra_noise, xs.shape[:2])
      return ys.astype(jnp.float32)

    batch = {
        'xs_BxNxD': xs_BxNxD.astype(jnp.float32),
        'ys_BxN': labels(xs_BxNxD, k_noise, k_suite),
        'point_mask_BxN': jnp.ones(shape[:2], jnp.float32),
    }
    if query_xs_BxNxD is not None:
      batch['query_xs_BxNxD'] = query_xs_BxNxD.astype(jnp.float32)
      batch['query_ys_BxN'] = labels(query_xs_BxNxD, k_noise_query, k_suite_query)
    return batch, params

  # ---- subclass hooks ------------------------------------------------------------------

  def _draw_function(self, key: jax.Array) -> Params:
    raise NotImplementedError

  def _evaluate_one(self, params: Params, xs_NxD: jax.Array) -> jax.Array:
    raise NotImplementedError


def _check_suite(suite: str) -> None:
  if suite not in OOD_SUITES:
    raise ConfigError(f'suite {suite!r} is invalid: one of {", ".join(OOD_SUITES)}')


def _orthogonal_queries(xs_BxNxD: jax.Array) -> jax.Array:
  """Query i = the part of x_i orthogonal to x_0..x_{i-1}, rescaled to |x_i| (Garg).

  Gram-Schmidt on the columns of X^T is the QR decomposition X^T = Q R: column q_i spans
  x_i's component orthogonal to the earlier x's, and that component equals R_ii q_i.
  Only i < min(N, d) is defined; later rows are zero.
  """
  _, num_points, n_dims = xs_BxNxD.shape
  rank = min(num_points, n_dims)
  q_BxDxR, r_BxRxN = jnp.linalg.qr(jnp.swapaxes(xs_BxNxD, 1, 2))
  diag_BxR = jnp.diagonal(r_BxRxN[:, :, :rank], axis1=1, axis2=2)
  norms_BxR = jnp.linalg.norm(xs_BxNxD[:, :rank], axis=-1)
  signs_BxR = jnp.where(diag_BxR < 0, -1.0, 1.0)
  queries_BxRxD = jnp.swapaxes(q_BxDxR, 1, 2) * (signs_BxR * norms_BxR)[..., None]
  return jnp.zeros_like(xs_BxNxD).at[:, :rank].set(queries_BxRxD)


@register_task('linear_regression')
class LinearRegression(RegressionTask):
  """y = w·x with w ~ N(0, I_d)."""

  def _draw_function(self, key):
    return {'w_D': jax.random.normal(key, (self.n_dims,))}

  def _evaluate_one(self, params, xs_NxD):
    return xs_NxD @ params['w_D']


@register_task('sparse_linear_regression')
class SparseLinearRegression(LinearRegression):
  """y = w·x with w ~ N(0, I_d) restricted to `sparsity` coordinates chosen uniformly."""
  extra_defaults = dict(sparsity=3)

  def _validate(self, cfg):
    s = cfg['sparsity']
    require(_is_int(s) and 1 <= s <= cfg['n_dims'], 'task.sparsity', s,
            f'an integer in [1, n_dims={cfg["n_dims"]}]')

  def error_normaliser(self) -> float:
    return float(self.cfg['sparsity'])  # E[y^2] = sparsity (Garg normalises by it)

  def _draw_function(self, key):
    k_w, k_support = jax.random.split(key)
    w_D = jax.random.normal(k_w, (self.n_dims,))
    support = jax.random.permutation(k_support, self.n_dims)[:self.cfg['sparsity']]
    mask_D = jnp.zeros((self.n_dims,)).at[support].set(1.0)
    return {'w_D': w_D * mask_D}


@register_task('noisy_linear_regression')
class NoisyLinearRegression(LinearRegression):
  """y = w·x + eps, eps ~ N(0, noise_std^2) independently per point."""
  extra_defaults = dict(noise_std=0.5)
  per_seed_keys = RegressionTask.per_seed_keys + ('noise_std',)

  @property
  def noise_std(self):
    return self.__dict__.get('noise_std', float(self.cfg['noise_std']))

  @noise_std.setter
  def noise_std(self, value):
    self.__dict__['noise_std'] = value

  def _validate(self, cfg):
    s = cfg['noise_std']
    require(_is_number(s) and math.isfinite(s) and s >= 0, 'task.noise_std', s,
            'a finite number >= 0')

  def label_noise(self, key, shape):
    return self.noise_std * jax.random.normal(key, shape)


@register_task('quadratic_regression')
class QuadraticRegression(LinearRegression):
  """y = (x ⊙ x)·w / sqrt(3), w ~ N(0, I_d): E[y^2] = d, as Garg."""

  def _evaluate_one(self, params, xs_NxD):
    return (xs_NxD ** 2) @ params['w_D'] / math.sqrt(3.0)


@register_task('relu2nn_regression')
class Relu2nnRegression(RegressionTask):
  """y = sqrt(2/h) * sum_j v_j relu(u_j·x), U ~ N(0,1)^{d x h}, v ~ N(0, I_h) (Garg)."""
  extra_defaults = dict(hidden_size=100)

  def _validate(self, cfg):
    h = cfg['hidden_size']
    require(_is_int(h) and h >= 1, 'task.hidden_size', h, 'an integer >= 1')

  def _draw_function(self, key):
    k_in, k_out = jax.random.split(key)
    hidden = self.cfg['hidden_size']
    return {'w_in_DxH': jax.random.normal(k_in, (self.n_dims, hidden)),
            'w_out_H': jax.random.normal(k_out, (hidden,))}

  def _evaluate_one(self, params, xs_NxD):
    hidden_NxH = jax.nn.relu(xs_NxD @ params['w_in_DxH'])
    return (hidden_NxH @ params['w_out_H']) * math.sqrt(2.0 / self.cfg['hidden_size'])


@register_task('decision_tree')
class DecisionTree(RegressionTask):
  """A full binary tree of `depth`: node k splits on x[c_k] > 0 (right) with c_k uniform in
  [0, d); leaves hold N(0, 1) values (Garg). Nodes are heap-ordered: children of k are 2k+1
  (x[c_k] <= 0) and 2k+2 (x[c_k] > 0); leaf l is node 2^depth - 1 + l."""
  extra_defaults = dict(depth=4)

  def _validate(self, cfg):
    depth = cfg['depth']
    require(_is_int(depth) and 1 <= depth <= 20, 'task.depth', depth, 'an integer in [1, 20]')

  def error_normaliser(self) -> float:
    return 1.0  # leaf values are N(0, 1); Garg normalises the tree task by 1

  def _draw_function(self, key):
    k_coord, k_leaf = jax.random.split(key)
    depth = self.cfg['depth']
    return {'split_coord_I': jax.random.randint(k_coord, (2**depth - 1,), 0, self.n_dims),
            'leaf_value_L': jax.random.normal(k_leaf, (2**depth,))}

  def _evaluate_one(self, params, xs_NxD):
    depth = self.cfg['depth']
    node_N = jnp.zeros((xs_NxD.shape[0],), jnp.int32)
    for _ in range(depth):  # static depth: one gather per level
      coord_N = params['split_coord_I'][node_N]
      go_right_N = jnp.take_along_axis(xs_NxD, coord_N[:, None], axis=1)[:, 0] > 0
      node_N = 2 * node_N + 1 + go_right_N.astype(jnp.int32)
    return params['leaf_value_L'][node_N - (2**depth - 1)]
