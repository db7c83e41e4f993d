"""In-context regression baselines against independent numpy / scikit-learn implementations."""
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from sklearn.linear_model import Lasso
from sklearn.tree import DecisionTreeRegressor

from baselines import regression as R
from data.base import ConfigError

B, N, D = 3, 12, 5  # prefixes i < 5 are underdetermined, i > 5 overdetermined


def prompts(seed=0, batch=B, num_points=N, dim=D, sparsity=None):
  rng = np.random.default_rng(seed)
  xs = rng.normal(size=(batch, num_points, dim)).astype(np.float32)
  w = rng.normal(size=(batch, dim))
  if sparsity is not None:
    for row in w:
      row[rng.permutation(dim)[sparsity:]] = 0.0
  ys = np.einsum('bnd,bd->bn', xs, w) + 0.1 * rng.normal(size=(batch, num_points))
  return xs, ys.astype(np.float32)


def per_prefix(xs, ys, predict_one):
  """Reference: preds[b, i] = predict_one(X_prefix, y_prefix, x_query) for i >= 1, 0 at i = 0."""
  xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
  preds = np.zeros(ys.shape)
  for b in range(xs.shape[0]):
    for i in range(1, xs.shape[1]):
      preds[b, i] = predict_one(xs[b, :i], ys[b, :i], xs[b, i])
  return preds


def test_least_squares_is_minimum_norm_lstsq():
  xs, ys = prompts()
  preds = np.asarray(R.least_squares()(xs, ys))
  expected = per_prefix(xs, ys, lambda x, y, q: q @ np.linalg.lstsq(x, y, rcond=None)[0])
  via_pinv = per_prefix(xs, ys, lambda x, y, q: q @ np.linalg.pinv(x) @ y)
  np.testing.assert_allclose(expected, via_pinv, atol=1e-8)
  np.testing.assert_allclose(preds, expected, rtol=1e-3, atol=1e-3)


def test_ridge_matches_closed_form():
  xs, ys = prompts(1)
  alpha = 0.7
  preds = np.asarray(R.ridge(alpha)(xs, ys))
  expected = per_prefix(
      xs, ys, lambda x, y, q: q @ np.linalg.solve(x.T @ x + alpha * np.eye(D), x.T @ y))
  np.testing.assert_allclose(preds, expected, rtol=1e-3, atol=1e-4)


def _sklearn_lasso(x, y, alpha):
  model = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=1_000_000)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    model.fit(x, y)
  return model.coef_


@pytest.mark.parametrize('alpha', [0.1, 0.01])
def test_lasso_coefficients_match_sklearn(alpha):
  dim, num_points = 8, 16
  xs, ys = prompts(2, batch=4, num_points=num_points, dim=dim, sparsity=3)
  a, b, expected = [], [], []
  for prompt in range(xs.shape[0]):
    for i in range(1, num_points):
      x, y = xs[prompt, :i].astype(np.float64), ys[prompt, :i].astype(np.float64)
      a.append(x.T @ x / i)
      b.append(x.T @ y / i)
      expected.append(_sklearn_lasso(x, y, alpha))
  a, b, expected = (np.array(v, np.float32) for v in (a, b, expected))
  homotopy, finished, _ = R.lasso_homotopy(jnp.asarray(a), jnp.asarray(b), alpha, max_events=40)
  assert np.all(np.asarray(finished))
  np.testing.assert_allclose(np.asarray(homotopy), expected, atol=1e-4)
  np.testing.assert_allclose(np.asarray(R.lasso_solve(jnp.asarray(a), jnp.asarray(b), alpha)),
                             expected, atol=1e-4)
  # The baseline's predictions are x_i . w with the same coefficients.
  preds = np.asarray(R.lasso(alpha)(xs, ys))
  reference = per_prefix(xs, ys, lambda x, y, q: q @ _sklearn_lasso(x, y, alpha))
  np.testing.assert_allclose(preds, reference, atol=5e-4, rtol=1e-3)


def test_lasso_matches_sklearn_at_garg_scale_and_with_a_zero_feature():
  # d = 20, 41 points, alpha = 0.1 as in Garg et al.; the last feature is zero everywhere (as
  # with the dimension curriculum), which scikit-learn leaves at 0.
  xs, ys = prompts(13, batch=2, num_points=41, dim=20, sparsity=3)
  xs[..., -1] = 0.0
  preds = np.asarray(R.lasso(0.1)(xs, ys))
  reference = per_prefix(xs, ys, lambda x, y, q: q @ _sklearn_lasso(x, y, 0.1))
  np.testing.assert_allclose(preds, reference, atol=5e-4, rtol=1e-3)


def test_lasso_coordinate_descent_alone_matches_sklearn_when_well_conditioned():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(6, 40, 5))
  y = x @ np.array([1.5, 0.0, -2.0, 0.0, 0.3]) + 0.1 * rng.normal(size=(6, 40))
  a = np.einsum('pnd,pne->pde', x, x) / 40
  b = np.einsum('pnd,pn->pd', x, y) / 40
  w, sweeps = R.lasso_coordinate_descent(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32),
                                         0.1, tol=1e-6, max_sweeps=500)
  assert int(sweeps) < 500
  expected = np.array([_sklearn_lasso(x[p], y[p], 0.1) for p in range(6)])
  np.testing.assert_allclose(np.asarray(w), expected, atol=1e-4)


def _knn_reference(k, weights):
  def predict(x, y, q):
    dist = np.sqrt(((x - q) ** 2).sum(axis=1))
    order = np.argsort(dist, kind='stable')[:min(k, len(y))]
    if weights == 'uniform':
      return y[order].mean()
    if np.any(dist[order] == 0):
      return y[order][dist[order] == 0].mean()
    w = 1.0 / dist[order]
    return (w * y[order]).sum() / w.sum()
  return predict


@pytest.mark.parametrize('k,weights', [(3, 'uniform'), (1, 'uniform'), (3, 'distance')])
def test_knn_matches_brute_force(k, weights):
  xs, ys = prompts(4)
  xs[:, 7] = xs[:, 2]  # an exact repeat: distance 0 takes all the weight with 'distance'
  preds = np.asarray(R.knn(k, weights)(xs, ys))
  np.testing.assert_allclose(preds, per_prefix(xs, ys, _knn_reference(k, weights)),
                             rtol=1e-5, atol=1e-5)


def test_averaging_matches_formula():
  xs, ys = prompts(5)
  preds = np.asarray(R.averaging()(xs, ys))
  expected = per_prefix(xs, ys, lambda x, y, q: q @ (y[:, None] * x).mean(axis=0))
  np.testing.assert_allclose(preds, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('num_steps,learning_rate', [(1, 1.0), (7, 0.05), (10, None)])
def test_gd_matches_explicit_loop(num_steps, learning_rate):
  xs, ys = prompts(6)

  def predict(x, y, q):
    w = np.zeros(x.shape[1])
    lr = 1.0 / np.mean((x ** 2).sum(axis=1)) if learning_rate is None else learning_rate
    for _ in range(num_steps):
      w = w - lr * x.T @ (x @ w - y) / len(y)
    return q @ w

  preds = np.asarray(R.gd(num_steps, learning_rate)(xs, ys))
  np.testing.assert_allclose(preds, per_prefix(xs, ys, predict), rtol=1e-3, atol=1e-4)
  if num_steps == 1 and learning_rate == 1.0:  # one unit step from 0 is the averaging estimator
    np.testing.assert_allclose(preds, np.asarray(R.averaging()(xs, ys)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('max_depth,use_sign', [(4, False), (None, False), (2, True)])
def test_greedy_tree_matches_sklearn(max_depth, use_sign):
  xs, ys = prompts(7)

  def predict(x, y, q):
    if use_sign:
      x, q = np.sign(x), np.sign(q)
    tree = DecisionTreeRegressor(max_depth=max_depth, random_state=0).fit(x, y)
    return tree.predict(q[None])[0]

  fn = R.greedy_tree(max_depth=max_depth, use_sign=use_sign)
  assert not fn.jittable
  np.testing.assert_allclose(fn(xs, ys), per_prefix(xs, ys, predict), rtol=1e-6, atol=1e-6)
  capped = R.greedy_tree(max_depth=max_depth, use_sign=use_sign, max_prompts=2)(xs, ys)
  assert capped.shape == (2, N)


def _teacher_prompts(seed, batch, num_points, dim, hidden):
  rng = np.random.default_rng(seed)
  xs = rng.normal(size=(batch, num_points, dim))
  w_in = rng.normal(size=(batch, dim, hidden))
  w_out = rng.normal(size=(batch, hidden))
  ys = np.einsum('bnh,bh->bn', np.maximum(np.einsum('bnd,bdh->bnh', xs, w_in), 0), w_out)
  return xs.astype(np.float32), (ys * np.sqrt(2.0 / hidden)).astype(np.float32)


def test_relu2nn_fit_loss_decreases_and_matches_numpy_forward():
  xs, ys = _teacher_prompts(8, 1, 30, 3, 4)
  weights = (np.arange(30) < 20).astype(np.float32)  # train on the first 20 points only
  key = jax.random.key(0)
  params, losses = R.relu2nn_fit(key, jnp.asarray(xs[0]), jnp.asarray(ys[0]),
                                 jnp.asarray(weights), hidden_size=32, num_steps=200,
                                 learning_rate=1e-2)
  losses = np.asarray(losses)
  init = {k: np.asarray(v, np.float64) for k, v in R.relu2nn_init(key, 3, 32).items()}
  forward = (np.maximum(xs[0] @ init['w1_DxH'] + init['b1_H'], 0) @ init['w2_H'] + init['b2'])
  np.testing.assert_allclose(losses[0], np.mean((forward - ys[0])[:20] ** 2), rtol=1e-4)
  assert losses.shape == (201,)
  assert losses[-1] < 0.1 * losses[0]
  assert np.mean(losses[150:]) < np.mean(losses[:50])
  # PyTorch-style init bounds.
  assert np.all(np.abs(init['w1_DxH']) <= 3 ** -0.5) and np.all(np.abs(init['w2_H']) <= 32 ** -0.5)


def test_relu2nn_beats_least_squares_on_a_relu_target():
  xs, ys = _teacher_prompts(9, 4, 41, 3, 4)
  preds = np.asarray(R.relu2nn(hidden_size=32, chunk_size=2)(xs, ys))
  least_squares = np.asarray(R.least_squares()(xs, ys))
  late = slice(25, 41)
  net_error = np.mean((preds - ys)[:, late] ** 2)
  ls_error = np.mean((least_squares - ys)[:, late] ** 2)
  assert net_error < 0.5 * ls_error, (net_error, ls_error)
  assert np.all(preds[:, 0] == 0)


SMALL_OPTIONS = {
    'ridge': {'alpha': 0.3},
    'lasso': {'alpha': 0.05},
    'gd': {'num_steps': 3},
    'greedy_tree': {'max_depth': 3},
    'relu2nn': {'hidden_size': 8, 'num_steps': 5},
}


@pytest.mark.parametrize('name', sorted(R.BASELINES))
def test_causal_prefix_property(name):
  fn = R.BASELINES[name](**SMALL_OPTIONS.get(name, {}))
  xs, ys = prompts(10)
  preds = np.asarray(fn(xs, ys))
  assert preds.shape == (B, N)
  assert np.all(np.isfinite(preds))
  np.testing.assert_array_equal(preds[:, 0], 0.0)
  rng = np.random.default_rng(11)
  for i in (1, 4, 8):
    xs2, ys2 = xs.copy(), ys.copy()
    xs2[:, i + 1:] = rng.normal(size=xs2[:, i + 1:].shape)  # x_i is the query: kept
    ys2[:, i:] = rng.normal(size=ys2[:, i:].shape) * 3
    preds2 = np.asarray(fn(xs2, ys2))
    np.testing.assert_allclose(preds2[:, :i + 1], preds[:, :i + 1], rtol=1e-6, atol=1e-6)
    # ... and the change is visible later (the check above is not vacuous).
    assert not np.allclose(preds2[:, i + 1:], preds[:, i + 1:])
  if fn.jittable:
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(xs, ys)), preds, rtol=1e-6, atol=1e-6)


def _config(task_name, **task):
  return ml_collections.ConfigDict({'task': {'name': task_name, 'n_dims': D, **task}})


@pytest.mark.parametrize('task_name,expected', [
    ('linear_regression', {'least_squares', 'ridge', '3nn', 'averaging', 'gd'}),
    ('noisy_linear_regression', {'least_squares', 'ridge', '3nn', 'averaging', 'gd'}),
    ('sparse_linear_regression', {'least_squares', 'ridge', '3nn', 'averaging', 'gd', 'lasso',
                                  'lasso_0.01'}),
    ('quadratic_regression', {'least_squares', '3nn', 'averaging', 'relu2nn'}),
    ('relu2nn_regression', {'least_squares', '3nn', 'averaging', 'relu2nn'}),
    ('decision_tree', {'least_squares', '3nn', 'averaging', 'greedy_tree'}
     | ({'xgboost'} if R.xgboost_available() else set())),
])
def test_get_baselines_names(task_name, expected):
  assert set(R.get_baselines(task_name, _config(task_name))) == expected


def test_get_baselines_options_and_errors():
  xs, ys = prompts(12)
  config = _config('noisy_linear_regression', noise_std=0.5, y_scale=2.0)
  got = R.get_baselines('noisy_linear_regression', config)
  # Posterior mean: alpha = (noise_std / y_scale)^2.
  np.testing.assert_allclose(np.asarray(got['ridge'](xs, ys)),
                             np.asarray(R.ridge(0.0625)(xs, ys)), rtol=1e-6, atol=1e-6)
  config.eval = ml_collections.ConfigDict(
      {'baselines': {'knn': {'k': 5}, 'relu2nn': {'max_prompts': 2}}})
  got = R.get_baselines('relu2nn_regression', config)
  assert '5nn' in got and got['relu2nn'].max_prompts == 2
  np.testing.assert_allclose(np.asarray(got['5nn'](xs, ys)), np.asarray(R.knn(5)(xs, ys)))
  assert R.get_baselines('decision_tree', _config('decision_tree'))['greedy_tree'].max_prompts \
      == R.DEFAULT_EXPENSIVE_MAX_PROMPTS
  with pytest.raises(ConfigError, match='task.name'):
    R.get_baselines('dyck_language', _config('dyck_language'))
  config.eval.baselines = ml_collections.ConfigDict({'gd': {'steps': 3}})
  with pytest.raises(ConfigError, match='baselines.gd.steps'):
    R.get_baselines('linear_regression', config)
  with pytest.raises(ConfigError, match='baselines.ridge.alpha'):
    R.ridge(-1.0)
  with pytest.raises(ConfigError, match='baselines.knn.weights'):
    R.knn(3, 'gaussian')
  with pytest.raises(ConfigError, match='baselines.relu2nn.max_prompts'):
    R.relu2nn(max_prompts=0)


# ---- Lasso at alpha 0.01, XGBoost, the declared config.eval.baselines --------------------------

def test_lasso_001_baseline_matches_sklearn():
  xs, ys = prompts(21, batch=2, num_points=10, dim=4, sparsity=2)
  got = R.get_baselines('sparse_linear_regression', _config('sparse_linear_regression'))
  reference = per_prefix(xs, ys, lambda x, y, q: q @ _sklearn_lasso(x, y, 0.01))
  np.testing.assert_allclose(np.asarray(got['lasso_0.01'](xs, ys)), reference, atol=5e-4,
                             rtol=1e-3)
  reference_01 = per_prefix(xs, ys, lambda x, y, q: q @ _sklearn_lasso(x, y, 0.1))
  np.testing.assert_allclose(np.asarray(got['lasso'](xs, ys)), reference_01, atol=5e-4,
                             rtol=1e-3)
  # The two differ (the second curve is not a copy of the first).
  assert not np.allclose(reference, reference_01, atol=1e-3)


def test_lasso_variant_shares_options_but_keeps_its_alpha():
  config = _config('sparse_linear_regression')
  config.eval = ml_collections.ConfigDict({'baselines': {'lasso': {'alpha': 0.05,
                                                                    'polish_sweeps': 0}}})
  xs, ys = prompts(22, batch=2, num_points=8, dim=4)
  got = R.get_baselines('sparse_linear_regression', config)
  np.testing.assert_allclose(np.asarray(got['lasso'](xs, ys)),
                             np.asarray(R.lasso(0.05, polish_sweeps=0)(xs, ys)))
  np.testing.assert_allclose(np.asarray(got['lasso_0.01'](xs, ys)),
                             np.asarray(R.lasso(0.01, polish_sweeps=0)(xs, ys)))


class _FakeXGBRegressor:
  """Stands in for xgboost.XGBRegressor: records its constructor arguments, predicts the mean."""
  made = []

  def __init__(self, **kwargs):
    _FakeXGBRegressor.made.append(kwargs)

  def fit(self, x, y):
    self.mean = float(np.mean(y))
    return self

  def predict(self, x):
    return np.full(len(x), self.mean, np.float32)


def test_xgboost_is_optional_and_fits_default_regressors_per_prefix(monkeypatch):
  import sys
  import types
  monkeypatch.setitem(sys.modules, 'xgboost', None)   # `import xgboost` raises ImportError
  assert not R.xgboost_available()
  assert 'xgboost' not in R.get_baselines('decision_tree', _config('decision_tree'))
  fake = types.ModuleType('xgboost')
  fake.XGBRegressor = _FakeXGBRegressor
  monkeypatch.setitem(sys.modules, 'xgboost', fake)
  _FakeXGBRegressor.made.clear()
  got = R.get_baselines('decision_tree', _config('decision_tree'))
  assert got['xgboost'].max_prompts == R.DEFAULT_EXPENSIVE_MAX_PROMPTS
  assert not got['xgboost'].jittable
  xs, ys = prompts(23, batch=2, num_points=6)
  preds = got['xgboost'](xs, ys)
  # One regressor per (prompt, position >= 1), all at xgboost's defaults (Garg et al.).
  assert _FakeXGBRegressor.made == [{}] * (2 * 5)
  expected = per_prefix(xs, ys, lambda x, y, q: np.mean(y))
  np.testing.assert_allclose(preds, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not R.xgboost_available(), reason='xgboost is not installed')
def test_xgboost_real_package_is_causal_and_fits():
  xs, ys = prompts(24, batch=2, num_points=8)
  preds = R.xgboost()(xs, ys)
  assert preds.shape == (2, 8) and np.all(preds[:, 0] == 0) and np.all(np.isfinite(preds))


def test_declared_baselines_config_is_used_and_validated():
  from configs.decision_tree import get_config as tree_config
  from configs.sparse_linear_regression import get_config as sparse_config
  config = sparse_config('tiny')
  assert config.eval.baselines.lasso.alpha == 0.1
  assert config.eval.baselines.ridge.alpha is None     # computed from the task
  assert config.eval.baselines.greedy_tree.max_prompts == R.DEFAULT_EXPENSIVE_MAX_PROMPTS
  R.validate_baselines_config(config)
  got = R.get_baselines(config.task.name, config)
  assert {'lasso', 'lasso_0.01', '3nn'} <= set(got)
  config.eval.baselines.knn.k = 4
  assert '4nn' in R.get_baselines(config.task.name, config)
  config.eval.baselines.ridge.alpha = 0.5     # a typed placeholder: settable to a float
  assert float(np.asarray(R.get_baselines(config.task.name, config)['ridge'](
      *prompts(1))).std()) > 0
  config.eval.baselines.lasso.alpha = -1.0
  with pytest.raises(ConfigError, match='baselines.lasso.alpha'):
    R.get_baselines(config.task.name, config)
  tree = tree_config('tiny')
  tree.eval.baselines.greedy_tree.max_prompts = 0    # 0: every prompt
  assert R.get_baselines(tree.task.name, tree)['greedy_tree'].max_prompts is None
  tree.eval.baselines.lasso.alpha = -1.0   # not a baseline of trees, still an error
  with pytest.raises(ConfigError, match='baselines.lasso.alpha'):
    R.validate_baselines_config(tree)
  tree = tree_config('tiny')
  tree.eval.baselines.knnn = ml_collections.ConfigDict({'k': 3})
  with pytest.raises(ConfigError, match='eval.baselines.knnn'):
    R.get_baselines(tree.task.name, tree)


def test_dmmse_is_the_posterior_mean_over_the_pool():
  """Against a direct computation: p(m | prefix) ∝ exp(-SSE_m / (2 s^2)), prediction x_i . E[w]."""
  rng = np.random.default_rng(0)
  pool = rng.standard_normal((5, 3))
  xs = rng.standard_normal((2, 6, 3)).astype(np.float32)
  true = pool[[1, 4]]
  ys = (np.einsum('bnd,bd->bn', xs, true) + 0.3 * rng.standard_normal((2, 6))).astype(np.float32)
  preds = np.asarray(R.dmmse(pool, 0.09)(jnp.asarray(xs), jnp.asarray(ys)))
  for b in range(2):
    for i in range(6):
      sse = np.array([np.sum((ys[b, :i] - xs[b, :i] @ w) ** 2) for w in pool])
      weights = np.exp(-(sse - sse.min()) / (2 * 0.09))
      mean_w = (weights / weights.sum()) @ pool
      assert preds[b, i] == pytest.approx(float(xs[b, i] @ mean_w), rel=1e-4, abs=1e-5)
  # with many noiseless examples it identifies the task exactly
  clean = np.einsum('bnd,bd->bn', xs, true).astype(np.float32)
  exact = np.asarray(R.dmmse(pool, 1e-4)(jnp.asarray(xs), jnp.asarray(clean)))
  np.testing.assert_allclose(exact[:, -1], clean[:, -1], rtol=1e-4, atol=1e-4)


def test_get_baselines_adds_dmmse_for_a_finite_pool():
  from configs.noisy_linear_regression import get_config
  config = get_config('tiny')
  assert 'dmmse' not in R.get_baselines('noisy_linear_regression', config)
  config.task.num_tasks = 8
  assert 'dmmse' in R.get_baselines('noisy_linear_regression', config)
