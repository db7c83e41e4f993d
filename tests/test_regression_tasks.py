"""Properties of Garg et al.'s regression task samplers (data/regression.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data.base import TASKS, ConfigError
from data import regression
from data.regression import OOD_OPTIONS, OOD_SUITES, skewed_eigenvalues


NAMES = ('linear_regression', 'sparse_linear_regression', 'noisy_linear_regression',
         'quadratic_regression', 'relu2nn_regression', 'decision_tree')
# One shape everywhere: every sampler compiles once per shape, and compiling dominates runtime.
# Statistics use many calls of this shape instead of one large batch.
D, N, B = 5, 9, 8


def make(name, **overrides):
  config = dict(TASKS[name].default_config())
  config.update(n_dims=D, n_points=N)
  config.update(overrides)
  config['name'] = name
  return TASKS[name](config)


def many(fn, num_calls, seed=100):
  """Concatenates fn(key) over num_calls keys (tuples and dicts of arrays, leading axis)."""
  outs = [jax.tree.map(np.asarray, fn(jax.random.key(seed + i))) for i in range(num_calls)]
  return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def np_tree(split_coord, leaf_value, x, depth):
  """Brute-force recursive evaluation of a heap-ordered tree at one point."""
  def walk(node, level):
    if level == depth:
      return leaf_value[node - (2**depth - 1)]
    child = 2 * node + 2 if x[split_coord[node]] > 0 else 2 * node + 1
    return walk(child, level + 1)
  return walk(0, 0)


def np_labels(task, params, xs_BxNxD):
  """Independent numpy evaluation (float64) of every prompt's function at its points."""
  out = []
  for b, x in enumerate(np.asarray(xs_BxNxD, np.float64)):
    p = {k: np.asarray(v[b], np.float64) for k, v in params.items()}
    if task.name == 'quadratic_regression':
      y = np.sum(x * x * p['w_D'], axis=1) / np.sqrt(3.0)
    elif 'w_D' in p:
      y = x @ p['w_D']
    elif task.name == 'relu2nn_regression':
      hidden = p['w_in_DxH'].shape[1]
      y = np.maximum(x @ p['w_in_DxH'], 0.0) @ p['w_out_H'] * np.sqrt(2.0 / hidden)
    else:
      coords = p['split_coord_I'].astype(int)
      y = np.array([np_tree(coords, p['leaf_value_L'], xi, task.cfg['depth']) for xi in x])
    out.append(y * task.y_scale)
  return np.stack(out)


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
  task = make(name, y_scale=1.5)
  batch, params = task.sample_with_functions(jax.random.key(2), B)
  residual = np.asarray(batch['ys_BxN']) - np_labels(task, params, batch['xs_BxNxD'])
  if name == 'noisy_linear_regression':
    assert np.std(residual) > 0.1  # the noise is there; its level is tested below
  else:
    np.testing.assert_allclose(residual, 0.0, atol=1e-4)


@pytest.mark.parametrize('name', NAMES)
def test_label_scale_is_garg_normaliser(name):
  """E[y^2] = d (linear; quadratic with its 1/sqrt(3); ReLU net with sqrt(2/h)), k, or 1."""
  task = make(name)
  ys = many(lambda k: task.sample(k, B)['ys_BxN'], 125).astype(np.float64)
  expected = task.error_normaliser()
  if name == 'noisy_linear_regression':
    expected += task.cfg['noise_std'] ** 2
  assert abs(np.mean(ys ** 2) / expected - 1.0) < 0.15


def test_model_inputs_layout_and_predictions():
  task = make('linear_regression')
  batch = task.sample(jax.random.key(0), B)
  features = np.asarray(task.model_inputs(batch))
  assert features.shape == (B, 2 * N, D)
  np.testing.assert_array_equal(features[:, 0::2], batch['xs_BxNxD'])
  np.testing.assert_array_equal(features[:, 1::2, 0], batch['ys_BxN'])
  np.testing.assert_array_equal(features[:, 1::2, 1:], 0.0)
  outputs = jnp.asarray(features[..., :2])  # channel 0 at the x positions is x_i[0]
  np.testing.assert_array_equal(task.predictions(outputs), batch['xs_BxNxD'][..., 0])


def test_sparse_support_size_exact():
  task = make('sparse_linear_regression', sparsity=3)
  w = many(lambda k: task.sample_functions(k, B)['w_D'], 8)
  np.testing.assert_array_equal(np.count_nonzero(w, axis=1), 3)
  assert len({tuple(np.flatnonzero(row)) for row in w}) >= 6  # supports vary (10 possible)


def test_noise_level():
  task = make('noisy_linear_regression', noise_std=0.7)
  batch, params = many(lambda k: task.sample_with_functions(k, B), 64)
  clean = np.einsum('bnd,bd->bn', batch['xs_BxNxD'].astype(np.float64), params['w_D'])
  residual = batch['ys_BxN'] - clean
  # 4608 residuals: the variance estimate has relative std ~0.021; allow ~5 sigma.
  assert abs(residual.var() / 0.49 - 1.0) < 0.1
  assert abs(residual.mean()) < 0.05


def test_decision_tree_depth_and_leaves():
  depth = 2
  task = make('decision_tree', depth=depth)
  batch, params = many(lambda k: task.sample_with_functions(k, B), 8)
  assert params['split_coord_I'].shape == (64, 2**depth - 1)
  assert params['leaf_value_L'].shape == (64, 2**depth)
  ys = batch['ys_BxN']
  distinct = [len(np.unique(row)) for row in ys]
  assert max(distinct) <= 2**depth and max(distinct) > 1
  for b in range(64):  # every label is one of that prompt's leaves
    assert np.isin(ys[b], params['leaf_value_L'][b]).all()
  np.testing.assert_allclose(ys, np_labels(task, params, batch['xs_BxNxD']), atol=1e-6)
  coords = params['split_coord_I']
  assert coords.min() == 0 and coords.max() == D - 1
  leaves = many(lambda k: task.sample_functions(k, B)['leaf_value_L'], 250)  # 8000 values
  assert abs(leaves.mean()) < 0.05 and abs(leaves.var() - 1.0) < 0.07


@pytest.mark.parametrize('name', ['linear_regression', 'decision_tree'])
def test_finite_pool(name):
  task = make(name, num_tasks=B, pool_seed=4)

  def ids(params):
    rows = np.concatenate([np.asarray(params[k]).reshape(len(params[k]), -1)
                           for k in sorted(params)], axis=1)
    return {tuple(r) for r in rows}

  pool = ids(task.pool_functions())
  assert len(pool) == B
  seen = ids(many(lambda k: task.sample_functions(k, B), 16))
  assert seen == pool  # only the pool's functions, and (128 draws) all of them
  assert ids(make(name, num_tasks=B, pool_seed=5).pool_functions()) != pool
  assert len(ids(many(lambda k: make(name).sample_functions(k, B), 2))) == 2 * B
  # The new_tasks suite never draws from the pool; in_distribution only does.
  if name == 'linear_regression':
    fresh = task.sample_ood(jax.random.key(1), B, 'new_tasks')
    pooled = task.sample_ood(jax.random.key(1), B, 'in_distribution')
    w_pool = np.asarray(task.pool_functions()['w_D'])

    def solve(batch):   # noise-free labels: w is the least-squares solution of each prompt
      xs, ys = np.asarray(batch['xs_BxNxD'], np.float64), np.asarray(batch['ys_BxN'], np.float64)
      return np.stack([np.linalg.lstsq(x, y, rcond=None)[0] for x, y in zip(xs, ys)])

    def in_pool(w_BxD):
      return np.min(np.abs(w_BxD[:, None] - w_pool[None]).max(-1), 1) < 1e-3
    assert in_pool(solve(pooled)).all() and not in_pool(solve(fresh)).any()


def test_curriculum_masks_and_zeroes_without_recompiling():
  task = make('linear_regression', curriculum=True, dims_start=2, dims_inc=1,
              dims_interval=10, points_start=3, points_inc=2, points_interval=5)
  traces = []

  def sample(key, step):
    traces.append(1)  # runs only while tracing
    return task.sample_with_functions(key, B, step)

  sample_jit = jax.jit(sample)
  for step in (0, 9, 10, 25, 1000):
    batch, params = sample_jit(jax.random.key(step), jnp.int32(step))
    dims, points = min(2 + step // 10, D), min(3 + 2 * (step // 5), N)
    xs = np.asarray(batch['xs_BxNxD'])
    np.testing.assert_array_equal(xs[..., dims:], 0.0)
    assert np.all(xs[..., :dims] != 0.0)
    expected_mask = np.broadcast_to((np.arange(N) < points).astype(np.float32), (B, N))
    np.testing.assert_array_equal(batch['point_mask_BxN'], expected_mask)
    np.testing.assert_allclose(batch['ys_BxN'], np.einsum('bnd,bd->bn', xs, params['w_D']),
                               atol=1e-4)
  assert len(traces) == 1
  plain = make('linear_regression')  # curriculum off: the step changes nothing
  np.testing.assert_array_equal(plain.sample(jax.random.key(0), B, 0)['xs_BxNxD'],
                                plain.sample(jax.random.key(0), B, 10**6)['xs_BxNxD'])


def test_skewed_training_covariance():
  task = make('linear_regression', x_distribution='skewed')
  xs = many(lambda k: task.sample(k, B)['xs_BxNxD'], 100).reshape(-1, D).astype(np.float64)
  cov = xs.T @ xs / len(xs)  # 7200 points from one fixed covariance
  assert abs(np.trace(cov) / D - 1.0) < 0.05
  np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(cov))[::-1], skewed_eigenvalues(D),
                             rtol=0.1)
  assert np.abs(cov - np.diag(np.diag(cov))).max() > 0.05  # eigenbasis is not the axes
  np.testing.assert_allclose(skewed_eigenvalues(D) * np.arange(1, D + 1) ** 2,
                             skewed_eigenvalues(D)[0])  # l_i ∝ 1/i^2


@pytest.mark.parametrize('name', NAMES)
def test_ood_suites_labels(name):
  """Every suite: finite, right shapes, labels (and query labels) = f(x) of the prompt."""
  task = make(name)
  for suite in OOD_SUITES:
    batch, params = task.sample_ood_with_functions(jax.random.key(3), B, suite)
    assert batch['xs_BxNxD'].shape == (B, N, D) and batch['ys_BxN'].shape == (B, N)
    assert all(np.isfinite(np.asarray(v)).all() for v in batch.values()), suite
    assert ('query_xs_BxNxD' in batch) == (suite in regression.QUERY_SUITES)
    factor = OOD_OPTIONS['y_factor'] if suite == 'scaled_y' else 1.0
    noisy = name == 'noisy_linear_regression' or suite == 'noisy_labels'
    pairs = [('xs_BxNxD', 'ys_BxN')]
    if suite in regression.QUERY_SUITES:
      pairs.append(('query_xs_BxNxD', 'query_ys_BxN'))
    for xs_key, ys_key in pairs:
      residual = np.asarray(batch[ys_key]) - factor * np_labels(task, params, batch[xs_key])
      if suite == 'orthogonal' and xs_key.startswith('query'):
        residual = residual[:, :task.ood_positions(suite)]
      if noisy:
        assert np.std(residual) > 0.1
      else:
        np.testing.assert_allclose(residual, 0.0, atol=2e-4, err_msg=f'{suite} {ys_key}')
  with pytest.raises(ConfigError, match='in_distribution'):
    task.sample_ood(jax.random.key(0), B, 'sideways')


def ood(suite, **overrides):
  task = make('linear_regression', **overrides)
  return task, task.sample_ood(jax.random.key(11), B, suite)


def test_ood_in_distribution_and_scalings():
  task, base = ood('in_distribution')
  plain = task.sample(jax.random.key(11), B)
  for k in plain:
    np.testing.assert_array_equal(base[k], plain[k])
  _, sx = ood('scaled_x')
  np.testing.assert_allclose(sx['xs_BxNxD'], OOD_OPTIONS['x_factor'] * base['xs_BxNxD'],
                             rtol=1e-6)
  _, sy = ood('scaled_y')
  np.testing.assert_array_equal(sy['xs_BxNxD'], base['xs_BxNxD'])
  noisy = many(lambda k: task.sample_ood(k, B, 'noisy_labels'), 64)
  clean = many(lambda k: task.sample(k, B), 64)
  np.testing.assert_array_equal(noisy['xs_BxNxD'], clean['xs_BxNxD'])
  residual = noisy['ys_BxN'].astype(np.float64) - clean['ys_BxN']
  assert abs(residual.var() / OOD_OPTIONS['label_noise_std'] ** 2 - 1.0) < 0.1


def test_ood_skewed_covariance_per_prompt():
  """x_b = A_b z_b with z_b the in-distribution draw; A_b A_b^T has Garg's spectrum."""
  task, skewed = ood('skewed_covariance')
  z = np.asarray(task.sample(jax.random.key(11), B)['xs_BxNxD'], np.float64)
  tops = []
  for b in range(B):
    a_t = np.linalg.lstsq(z[b], np.asarray(skewed['xs_BxNxD'][b], np.float64), rcond=None)[0]
    eigval, eigvec = np.linalg.eigh(a_t.T @ a_t)
    np.testing.assert_allclose(eigval[::-1], skewed_eigenvalues(D), rtol=1e-3)
    tops.append(eigvec[:, -1])
  assert abs(tops[0] @ tops[1]) < 0.99  # each prompt has its own random eigenbasis


def test_ood_half_subspace():
  _, batch = ood('half_subspace')
  xs = np.asarray(batch['xs_BxNxD'], np.float64)
  for x in xs:
    s = np.linalg.svd(x, compute_uv=False)
    assert s[1] > 0.1 and s[2] < 1e-4 * s[0]  # rank exactly d // 2 = 2
  bases = [np.linalg.svd(x)[2][:2] for x in xs[:2]]
  assert np.linalg.norm(bases[0] @ bases[1].T) < np.sqrt(2) - 1e-3  # different subspaces
  task = make('linear_regression')
  xs_many = many(lambda k: task.sample_ood(k, B, 'half_subspace')['xs_BxNxD'], 100)
  assert abs(np.mean(np.sum(xs_many.astype(np.float64) ** 2, axis=-1)) / D - 1.0) < 0.06


@pytest.mark.parametrize('suite', ['orthant', 'opposite_orthant'])
def test_ood_orthants(suite):
  task, batch = ood(suite)
  base = task.sample(jax.random.key(11), B)
  xs, qxs = np.asarray(batch['xs_BxNxD']), np.asarray(batch['query_xs_BxNxD'])
  np.testing.assert_array_equal(np.abs(xs), np.abs(base['xs_BxNxD']))
  signs = np.sign(xs)
  np.testing.assert_array_equal(signs, np.broadcast_to(signs[:, :1], signs.shape))  # one orthant
  assert len({tuple(s) for s in signs[:, 0]}) > 1  # the orthant varies over prompts
  if suite == 'orthant':
    np.testing.assert_array_equal(qxs, base['xs_BxNxD'])  # unrestricted query
    assert np.mean(np.sign(qxs) == signs) < 0.75
  else:
    np.testing.assert_array_equal(np.sign(qxs), -signs)


def test_ood_orthogonal_matches_projection():
  task, batch = ood('orthogonal')
  assert task.ood_positions('orthogonal') == min(N, D) and task.ood_positions('orthant') == N
  xs = np.asarray(batch['xs_BxNxD'], np.float64)
  qxs = np.asarray(batch['query_xs_BxNxD'], np.float64)
  for b in range(B):
    for i in range(D):
      x_i = xs[b, i]
      if i == 0:
        expected = x_i
      else:  # Garg: remove the projection on the earlier x's, keep |x_i|
        prior = xs[b, :i]
        residual = x_i - prior.T @ np.linalg.lstsq(prior.T, x_i, rcond=None)[0]
        expected = residual * np.linalg.norm(x_i) / np.linalg.norm(residual)
        assert np.abs(prior @ qxs[b, i]).max() < 1e-4 * np.linalg.norm(x_i) ** 2
      np.testing.assert_allclose(qxs[b, i], expected, atol=1e-4)


def test_ood_overlapping_repeats_an_earlier_x():
  task = make('linear_regression')
  batch = many(lambda k: task.sample_ood(k, B, 'overlapping'), 8)
  xs, qxs = batch['xs_BxNxD'], batch['query_xs_BxNxD']
  np.testing.assert_array_equal(qxs[:, 0], xs[:, 0])
  chosen = []
  for b in range(len(xs)):
    for i in range(1, N):
      matches = np.flatnonzero((xs[b, :i] == qxs[b, i]).all(axis=1))
      assert len(matches) == 1
      if i == 4:
        chosen.append(matches[0])
  assert set(chosen) == {0, 1, 2, 3}


def test_sampling_is_the_same_when_sharded():
  assert jax.device_count() >= 2, 'tests/conftest.py sets eight fake devices'
  mesh = jax.make_mesh((2,), ('data',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  task = make('relu2nn_regression')
  sharded = jax.jit(lambda k: task.sample(k, B), out_shardings=sharding)(jax.random.key(0))
  plain = task.sample(jax.random.key(0), B)
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
    ('linear_regression', dict(curriculum=True, points_start=3, points_interval=0),
     'points_interval'),
])
def test_bad_config(name, overrides, key):
  with pytest.raises(ConfigError, match=f'config.task.{key}=') as info:
    make(name, **overrides)
  assert '\n' not in str(info.value)
  assert repr(overrides[key]) in str(info.value)
