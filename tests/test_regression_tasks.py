"""Properties of Garg et al.'s regression task samplers (data/regression.py)."""
import os
import sys
import types

# data/__init__.py also imports data.regbench, written in parallel; stand in until it lands.
if not os.path.exists(os.path.join(os.path.dirname(__file__), '..', 'data', 'regbench.py')):
  sys.modules.setdefault('data.regbench', types.ModuleType('data.regbench'))

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data.base import TASKS, ConfigError
from data import regression
from data.regression import OOD_OPTIONS, OOD_SUITES, skewed_eigenvalues

NAMES = ('linear_regression', 'sparse_linear_regression', 'noisy_linear_regression',
         'quadratic_regression', 'relu2nn_regression', 'decision_tree')
D, N, B = 5, 9, 4


def make(name, **overrides):
  config = dict(TASKS[name].default_config())
  config.update(n_dims=D, n_points=N)
  config.update(overrides)
  config['name'] = name
  return TASKS[name](config)


def np_tree(split_coord, leaf_value, x, depth):
  """Brute-force recursive evaluation of a heap-ordered tree at one point."""
  def walk(node, level):
    if level == depth:
      return leaf_value[node - (2**depth - 1)]
    child = 2 * node + 2 if x[split_coord[node]] > 0 else 2 * node + 1
    return walk(child, level + 1)
  return walk(0, 0)


def np_function(name, params, b, xs_NxD, task):
  """Independent numpy evaluation of function b of a batch at the points xs_NxD."""
  p = {k: np.asarray(v[b], np.float64) for k, v in params.items()}
  x = np.asarray(xs_NxD, np.float64)
  if name in ('linear_regression', 'sparse_linear_regression', 'noisy_linear_regression'):
    return x @ p['w_D']
  if name == 'quadratic_regression':
    return np.sum(x * x * p['w_D'], axis=1) / np.sqrt(3.0)
  if name == 'relu2nn_regression':
    hidden = p['w_in_DxH'].shape[1]
    return np.maximum(x @ p['w_in_DxH'], 0.0) @ p['w_out_H'] * np.sqrt(2.0 / hidden)
  depth = task.cfg['depth']
  coords = p['split_coord_I'].astype(int)
  return np.array([np_tree(coords, p['leaf_value_L'], xi, depth) for xi in x])


@pytest.mark.parametrize('name', NAMES)
def test_shapes_dtypes_determinism(name):
  task = make(name)
  assert task.eval_family == 'regression' and task.default_objective == 'regression_mse'
  io = task.io()
  assert (io.input_kind, io.input_dim, io.seq_len, io.output_dim) == ('vectors', D, 2 * N, 1)
  batch = task.sample(jax.random.key(0), B)
  assert set(batch) == {'xs_BxNxD', 'ys_BxN', 'point_mask_BxN'}
  assert batch['xs_BxNxD'].shape == (B, N, D) and batch['ys_BxN'].shape == (B, N)
  assert all(v.dtype == jnp.float32 for v in batch.values())
  np.testing.assert_array_equal(batch['point_mask_BxN'], np.ones((B, N)))
  again = task.sample(jax.random.key(0), B)
  other = task.sample(jax.random.key(1), B)
  for k in ('xs_BxNxD', 'ys_BxN'):
    np.testing.assert_array_equal(batch[k], again[k])
    assert not np.allclose(batch[k], other[k])


@pytest.mark.parametrize('name', NAMES)
def test_labels_match_numpy_formula(name):
  """ys equal an independent numpy evaluation of the returned function parameters."""
  task = make(name, depth=3) if name == 'decision_tree' else make(name)
  batch, params = task.sample_with_functions(jax.random.key(2), 6)
  xs = np.asarray(batch['xs_BxNxD'])
  expected = np.stack([np_function(name, params, b, xs[b], task) for b in range(6)])
  residual = np.asarray(batch['ys_BxN']) - expected
  if name == 'noisy_linear_regression':
    assert np.std(residual) > 0.1  # noise is there; its level is tested below
  else:
    np.testing.assert_allclose(residual, 0.0, atol=1e-4)


@pytest.mark.parametrize('name', NAMES)
def test_label_scale_is_garg_normaliser(name):
  """E[y^2] = d (linear, quadratic with its 1/sqrt(3), ReLU net with sqrt(2/h)), k, or 1."""
  task = make(name)
  ys = np.asarray(task.sample(jax.random.key(3), 2000)['ys_BxN'], np.float64)
  expected = task.error_normaliser()
  if name == 'noisy_linear_regression':
    expected += task.cfg['noise_std'] ** 2
  assert abs(np.mean(ys ** 2) / expected - 1.0) < 0.12


def test_model_inputs_layout_and_predictions():
  task = make('linear_regression')
  batch = task.sample(jax.random.key(0), B)
  features = np.asarray(task.model_inputs(batch))
  assert features.shape == (B, 2 * N, D)
  np.testing.assert_array_equal(features[:, 0::2], batch['xs_BxNxD'])
  np.testing.assert_array_equal(features[:, 1::2, 0], batch['ys_BxN'])
  np.testing.assert_array_equal(features[:, 1::2, 1:], 0.0)
  outputs = jnp.asarray(features[..., :2])  # channel 0 at x positions is x_i[0]
  np.testing.assert_array_equal(task.predictions(outputs), batch['xs_BxNxD'][..., 0])


def test_sparse_support_size_exact():
  task = make('sparse_linear_regression', n_dims=8, sparsity=3)
  params = task.sample_functions(jax.random.key(0), 64)
  w = np.asarray(params['w_D'])
  np.testing.assert_array_equal(np.count_nonzero(w, axis=1), 3)
  assert len({tuple(np.flatnonzero(row)) for row in w}) > 10  # supports vary


def test_noise_level():
  task = make('noisy_linear_regression', noise_std=0.7, n_points=41)
  batch, params = task.sample_with_functions(jax.random.key(5), 64)
  clean = np.einsum('bnd,bd->bn', np.asarray(batch['xs_BxNxD'], np.float64),
                    np.asarray(params['w_D'], np.float64))
  residual = np.asarray(batch['ys_BxN'], np.float64) - clean
  # 2624 residuals: the variance estimate has relative std ~0.028; allow ~4 sigma.
  assert abs(residual.var() / 0.49 - 1.0) < 0.12
  assert abs(residual.mean()) < 0.07


def test_decision_tree_depth_and_leaves():
  depth = 2
  task = make('decision_tree', depth=depth, n_points=64)
  batch, params = task.sample_with_functions(jax.random.key(7), 16)
  assert params['split_coord_I'].shape == (16, 2**depth - 1)
  assert params['leaf_value_L'].shape == (16, 2**depth)
  ys = np.asarray(batch['ys_BxN'])
  distinct = [len(np.unique(row)) for row in ys]
  assert max(distinct) <= 2**depth and max(distinct) > 1
  for b in range(16):  # every label is one of that prompt's leaves
    assert np.isin(ys[b], np.asarray(params['leaf_value_L'][b])).all()
  coords = np.asarray(task.sample_functions(jax.random.key(8), 500)['split_coord_I'])
  assert coords.min() == 0 and coords.max() == task.n_dims - 1
  leaves = np.asarray(task.sample_functions(jax.random.key(8), 2000)['leaf_value_L'])
  assert abs(leaves.mean()) < 0.05 and abs(leaves.var() - 1.0) < 0.06


@pytest.mark.parametrize('name', ['linear_regression', 'decision_tree'])
def test_finite_pool(name):
  task = make(name, num_tasks=3, pool_seed=4)
  pool = {k: np.asarray(v) for k, v in task.pool_functions().items()}
  key_of = lambda p, i: tuple(np.concatenate([np.ravel(p[k][i]) for k in sorted(p)]))
  pool_set = {key_of(pool, i) for i in range(3)}
  assert len(pool_set) == 3
  seen = set()
  for seed in (0, 1):
    params = {k: np.asarray(v) for k, v in task.sample_functions(jax.random.key(seed), 64).items()}
    seen |= {key_of(params, i) for i in range(64)}
  assert seen == pool_set  # only the pool's functions, and (64 draws) all of them
  other = make(name, num_tasks=3, pool_seed=5).pool_functions()
  assert {key_of({k: np.asarray(v) for k, v in other.items()}, i) for i in range(3)} != pool_set
  fresh = make(name).sample_functions(jax.random.key(0), 64)
  assert len({key_of({k: np.asarray(v) for k, v in fresh.items()}, i) for i in range(64)}) > 3


def test_curriculum_masks_and_zeroes_without_recompiling():
  task = make('linear_regression', n_dims=6, n_points=9, curriculum=True, dims_start=2,
              dims_inc=1, dims_interval=10, points_start=3, points_inc=2, points_interval=5)
  traces = []

  def sample(key, step):
    traces.append(1)  # runs only while tracing
    return task.sample_with_functions(key, 4, step)

  sample_jit = jax.jit(sample)
  for step in (0, 9, 10, 25, 1000):
    batch, params = sample_jit(jax.random.key(step), jnp.int32(step))
    dims, points = min(2 + step // 10, 6), min(3 + 2 * (step // 5), 9)
    xs = np.asarray(batch['xs_BxNxD'])
    np.testing.assert_array_equal(xs[..., dims:], 0.0)
    assert np.all(xs[..., :dims] != 0.0)
    expected_mask = np.broadcast_to((np.arange(9) < points).astype(np.float32), (4, 9))
    np.testing.assert_array_equal(batch['point_mask_BxN'], expected_mask)
    np.testing.assert_allclose(batch['ys_BxN'], np.einsum('bnd,bd->bn', xs, params['w_D']),
                               atol=1e-4)
  assert len(traces) == 1
  # With the curriculum off, the step changes nothing.
  plain = make('linear_regression')
  np.testing.assert_array_equal(plain.sample(jax.random.key(0), 2, 0)['xs_BxNxD'],
                                plain.sample(jax.random.key(0), 2, 10**6)['xs_BxNxD'])


def test_skewed_training_covariance():
  task = make('linear_regression', n_dims=4, n_points=500, x_distribution='skewed')
  xs = np.asarray(task.sample(jax.random.key(0), 8)['xs_BxNxD'], np.float64).reshape(-1, 4)
  cov = xs.T @ xs / len(xs)
  assert abs(np.trace(cov) / 4.0 - 1.0) < 0.06
  eig = np.sort(np.linalg.eigvalsh(cov))[::-1]
  np.testing.assert_allclose(eig, skewed_eigenvalues(4), rtol=0.12)
  assert np.abs(cov - np.diag(np.diag(cov))).max() > 0.05  # basis is not the coordinate axes
  # The covariance is a fixed part of the task: another key gives the same one.
  xs2 = np.asarray(task.sample(jax.random.key(1), 8)['xs_BxNxD'], np.float64).reshape(-1, 4)
  np.testing.assert_allclose(xs2.T @ xs2 / len(xs2), cov, atol=0.35)


def ood(suite, name='linear_regression', batch_size=8, **overrides):
  task = make(name, **overrides)
  return task, task.sample_ood(jax.random.key(11), batch_size, suite)


def test_ood_in_distribution_and_scalings():
  task, base = ood('in_distribution')
  plain = task.sample(jax.random.key(11), 8)
  for k in plain:
    np.testing.assert_array_equal(base[k], plain[k])
  _, sx = ood('scaled_x')
  np.testing.assert_allclose(sx['xs_BxNxD'], OOD_OPTIONS['x_factor'] * base['xs_BxNxD'], rtol=1e-6)
  np.testing.assert_allclose(sx['ys_BxN'], OOD_OPTIONS['x_factor'] * base['ys_BxN'], rtol=1e-4,
                             atol=1e-4)
  _, sy = ood('scaled_y')
  np.testing.assert_array_equal(sy['xs_BxNxD'], base['xs_BxNxD'])
  np.testing.assert_allclose(sy['ys_BxN'], OOD_OPTIONS['y_factor'] * base['ys_BxN'], rtol=1e-6)
  task, noisy = ood('noisy_labels', batch_size=64, n_points=41)
  clean = task.sample(jax.random.key(11), 64)
  np.testing.assert_array_equal(noisy['xs_BxNxD'], clean['xs_BxNxD'])
  residual = np.asarray(noisy['ys_BxN'], np.float64) - np.asarray(clean['ys_BxN'])
  assert abs(residual.var() / OOD_OPTIONS['label_noise_std'] ** 2 - 1.0) < 0.12


def test_ood_skewed_covariance_per_prompt():
  _, batch = ood('skewed_covariance', batch_size=3, n_dims=4, n_points=3000)
  tops = []
  for xs in np.asarray(batch['xs_BxNxD'], np.float64):
    cov = xs.T @ xs / len(xs)
    eigval, eigvec = np.linalg.eigh(cov)
    np.testing.assert_allclose(eigval[::-1], skewed_eigenvalues(4), rtol=0.15)
    tops.append(eigvec[:, -1])
  assert abs(tops[0] @ tops[1]) < 0.99  # each prompt has its own random eigenbasis


def test_ood_half_subspace():
  task, batch = ood('half_subspace', n_dims=6, n_points=200)
  xs_all = np.asarray(batch['xs_BxNxD'], np.float64)
  for xs in xs_all:
    s = np.linalg.svd(xs, compute_uv=False)
    assert s[2] > 1.0 and s[3] < 1e-4 * s[0]  # rank exactly d // 2 = 3
  assert abs(np.mean(np.sum(xs_all ** 2, axis=-1)) / 6.0 - 1.0) < 0.08  # E|x|^2 = d
  bases = [np.linalg.svd(xs)[2][:3] for xs in xs_all[:2]]
  assert np.linalg.norm(bases[0] @ bases[1].T) < np.sqrt(3) - 1e-3  # different subspaces


def fit_linear(xs, ys):
  return np.linalg.lstsq(np.asarray(xs, np.float64), np.asarray(ys, np.float64), rcond=None)[0]


@pytest.mark.parametrize('suite', ['orthant', 'opposite_orthant'])
def test_ood_orthants(suite):
  task, batch = ood(suite, n_points=30)
  base = task.sample(jax.random.key(11), 8)
  xs, qxs = np.asarray(batch['xs_BxNxD']), np.asarray(batch['query_xs_BxNxD'])
  np.testing.assert_array_equal(np.abs(xs), np.abs(base['xs_BxNxD']))
  signs = np.sign(xs)
  np.testing.assert_array_equal(signs, np.broadcast_to(signs[:, :1], signs.shape))  # one orthant
  assert len({tuple(s) for s in signs[:, 0]}) > 1  # orthant varies over prompts
  if suite == 'orthant':
    np.testing.assert_array_equal(qxs, base['xs_BxNxD'])  # unrestricted query
    assert np.mean(np.sign(qxs) == signs) < 0.75
  else:
    np.testing.assert_array_equal(np.sign(qxs), -signs)
  for b in range(8):  # query labels come from the prompt's function
    w = fit_linear(xs[b], batch['ys_BxN'][b])
    np.testing.assert_allclose(batch['query_ys_BxN'][b], qxs[b] @ w, atol=1e-3)


def test_ood_orthogonal_matches_projection():
  task, batch = ood('orthogonal', n_points=9, n_dims=5)
  assert task.ood_positions('orthogonal') == 5 and task.ood_positions('orthant') == 9
  xs = np.asarray(batch['xs_BxNxD'], np.float64)
  qxs = np.asarray(batch['query_xs_BxNxD'], np.float64)
  for b in range(8):
    for i in range(5):
      x_i = xs[b, i]
      if i == 0:
        expected = x_i
      else:  # Garg: remove the projection on the earlier x's, keep |x_i|
        prior = xs[b, :i]
        residual = x_i - prior.T @ np.linalg.lstsq(prior.T, x_i, rcond=None)[0]
        expected = residual * np.linalg.norm(x_i) / np.linalg.norm(residual)
        assert np.abs(prior @ qxs[b, i]).max() < 1e-4 * np.linalg.norm(x_i) ** 2
      np.testing.assert_allclose(qxs[b, i], expected, atol=1e-4)
    w = fit_linear(xs[b], batch['ys_BxN'][b])
    np.testing.assert_allclose(batch['query_ys_BxN'][b, :5], qxs[b, :5] @ w, atol=1e-3)


def test_ood_overlapping_repeats_an_earlier_x():
  _, batch = ood('overlapping', batch_size=64)
  xs, qxs = np.asarray(batch['xs_BxNxD']), np.asarray(batch['query_xs_BxNxD'])
  np.testing.assert_array_equal(qxs[:, 0], xs[:, 0])
  chosen = []
  for b in range(64):
    for i in range(1, N):
      matches = np.flatnonzero((xs[b, :i] == qxs[b, i]).all(axis=1))
      assert len(matches) == 1
      if i == 4:
        chosen.append(matches[0])
  assert set(chosen) == {0, 1, 2, 3}


def test_ood_suites_are_finite_for_every_task():
  for name in NAMES:
    task = make(name)
    for suite in OOD_SUITES:
      batch = task.sample_ood(jax.random.key(0), 2, suite)
      assert batch['xs_BxNxD'].shape == (2, N, D)
      assert all(np.isfinite(np.asarray(v)).all() for v in batch.values()), (name, suite)
  with pytest.raises(ConfigError, match='in_distribution'):
    task.sample_ood(jax.random.key(0), 2, 'sideways')


def test_sampling_is_the_same_when_sharded():
  if jax.device_count() < 2:
    pytest.skip('needs XLA_FLAGS=--xla_force_host_platform_device_count>=2')
  mesh = jax.make_mesh((2,), ('data',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  task = make('relu2nn_regression')
  sharded = jax.jit(lambda k: task.sample(k, 4), out_shardings=sharding)(jax.random.key(0))
  plain = task.sample(jax.random.key(0), 4)
  for k in plain:
    np.testing.assert_allclose(sharded[k], plain[k], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('name,overrides,key', [
    ('linear_regression', dict(n_dims=0), 'n_dims'),
    ('linear_regression', dict(n_dims=2.5), 'n_dims'),
    ('linear_regression', dict(n_points=0), 'n_points'),
    ('linear_regression', dict(num_tasks=-1), 'num_tasks'),
    ('linear_regression', dict(x_distribution='uniform'), 'x_distribution'),
    ('linear_regression', dict(x_scale=0.0), 'x_scale'),
    ('linear_regression', dict(sparsity=2), 'sparsity'),  # not a key of this task
    ('sparse_linear_regression', dict(sparsity=0), 'sparsity'),
    ('sparse_linear_regression', dict(sparsity=D + 1), 'sparsity'),
    ('noisy_linear_regression', dict(noise_std=-0.1), 'noise_std'),
    ('relu2nn_regression', dict(hidden_size=0), 'hidden_size'),
    ('decision_tree', dict(depth=0), 'depth'),
    ('linear_regression', dict(curriculum=True, dims_start=D + 1), 'dims_start'),
    ('linear_regression', dict(curriculum=True, points_interval=0), 'points_interval'),
])
def test_bad_config(name, overrides, key):
  with pytest.raises(ConfigError, match=f'config.task.{key}=') as info:
    make(name, **overrides)
  assert '\n' not in str(info.value)
  assert repr(list(overrides.values())[-1]) in str(info.value)
