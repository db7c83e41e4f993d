"""The mixture-of-classes regression task and its exact Bayes predictor (Panwar et al. 2024)."""
import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from baselines.regression import get_baselines, mixture_bayes
from configs.mixture_regression import get_config
from core import ConfigError
from data import get_task


def _task(**overrides):
  cfg = dict(name='mixture_regression', n_dims=6, n_points=8, sparsity=2)
  cfg.update(overrides)
  return get_task(ml_collections.ConfigDict(cfg))


def test_sampler_shapes_determinism_and_class_proportions():
  task = _task(weights='0.7,0.3', noise_std=0.25)
  sample = jax.jit(lambda key: task.sample_with_functions(key, 4000))
  (batch, params), (again, _) = sample(jax.random.key(3)), sample(jax.random.key(3))
  assert batch['xs_BxNxD'].shape == (4000, 8, 6) and batch['ys_BxN'].shape == (4000, 8)
  assert task.io().seq_len == 16 and task.io().input_dim == 6
  np.testing.assert_array_equal(np.asarray(batch['ys_BxN']), np.asarray(again['ys_BxN']))
  other, _ = sample(jax.random.key(4))
  assert not np.allclose(np.asarray(other['ys_BxN']), np.asarray(batch['ys_BxN']))

  component = np.asarray(params['component'])
  nonzero = (np.asarray(params['w_D']) != 0).sum(axis=1)
  # Class 1 (sparse) has weight 0.3: 4000 draws put the fraction within 4 sigma (0.029).
  assert abs(component.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 4000)
  assert set(nonzero[component == 1]) == {2} and set(nonzero[component == 0]) == {6}
  # Every sparse support is drawn: C(6, 2) = 15 supports, ~80 draws each.
  supports = {tuple(np.flatnonzero(w)) for w in np.asarray(params['w_D'])[component == 1]}
  assert len(supports) == 15
  residual = np.asarray(batch['ys_BxN']) - np.einsum('bnd,bd->bn', np.asarray(batch['xs_BxNxD']),
                                                      np.asarray(params['w_D']))
  assert abs(residual.std() - 0.25) < 0.01
  # E[(w.x)^2] = 0.7 * 6 + 0.3 * 2 is the error normaliser.
  assert task.error_normaliser() == pytest.approx(0.7 * 6 + 0.3 * 2)
  sparse_only = task.with_weights((0.0, 1.0))
  params_only = jax.jit(lambda k: sparse_only.sample_functions(k, 64))(jax.random.key(0))
  assert np.all(np.asarray(params_only['component']) == 1)
  assert sparse_only.error_normaliser() == 2.0


@pytest.mark.parametrize('overrides, key', [
    (dict(components='dense,tree'), 'task.components'),
    (dict(components='dense,dense', weights='1,1'), 'task.components'),
    (dict(weights='0.5'), 'task.weights'),
    (dict(weights='0,0'), 'task.weights'),
    (dict(weights='a,b'), 'task.weights'),
    (dict(sparsity=7), 'task.sparsity'),
    (dict(noise_std=-1.0), 'task.noise_std'),
])
def test_bad_config_values_name_the_key(overrides, key):
  with pytest.raises(ConfigError, match=f'config.{key}='):
    _task(**overrides)


def _brute_force_bayes(xs, ys, prior, n_dims, noise_variance):
  """Posterior mean by enumerating supports, each with the n x n Gaussian marginal likelihood
  N(y; 0, v X_S X_S^T + s^2 I) and posterior mean v X_S^T C^{-1} y (float64 NumPy)."""
  batch, num_points, _ = xs.shape
  preds = np.zeros((batch, num_points))
  total = sum(c['weight'] for c in prior)
  for b, i in itertools.product(range(batch), range(1, num_points)):
    x_prefix, y_prefix = xs[b, :i].astype(np.float64), ys[b, :i].astype(np.float64)
    log_post, support_preds = [], []
    for c in prior:
      count = math.comb(n_dims, c['support_size'])
      for support in itertools.combinations(range(n_dims), c['support_size']):
        x_s = x_prefix[:, list(support)]
        cov = c['variance'] * x_s @ x_s.T + noise_variance * np.eye(i)
        _, log_det = np.linalg.slogdet(cov)
        solved = np.linalg.solve(cov, y_prefix)
        log_post.append(math.log(c['weight'] / total / count) - 0.5 * (log_det + y_prefix @ solved))
        support_preds.append(xs[b, i, list(support)] @ (c['variance'] * x_s.T @ solved))
    weights = np.exp(np.array(log_post) - max(log_post))
    preds[b, i] = weights @ np.array(support_preds) / weights.sum()
  return preds


def test_mixture_bayes_matches_brute_force_enumeration():
  rng = np.random.default_rng(0)
  n_dims, batch, num_points = 4, 3, 7
  xs = rng.standard_normal((batch, num_points, n_dims)).astype(np.float32)
  w = np.zeros((batch, n_dims))
  w[0] = rng.standard_normal(n_dims)            # a dense prompt
  w[1:, [0, 2]] = rng.standard_normal((2, 2))   # two 2-sparse prompts
  ys = (1.5 * np.einsum('bnd,bd->bn', xs, w) + 0.2 * rng.standard_normal((batch, num_points)))
  ys = ys.astype(np.float32)
  prior = [dict(name='dense', weight=0.4, support_size=4, variance=2.25),
           dict(name='sparse', weight=0.6, support_size=2, variance=2.25)]
  bayes = mixture_bayes(prior, n_dims, 0.04)
  got = np.asarray(bayes(jnp.asarray(xs), jnp.asarray(ys)))
  want = _brute_force_bayes(xs, ys, prior, n_dims, 0.04)
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-3)
  # The class posterior picks out each prompt's class once the prefix is long enough.
  probs = np.asarray(bayes.class_posterior(jnp.asarray(xs), jnp.asarray(ys)))
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(probs[:, 0], [[0.4, 0.6]] * 3, atol=1e-5)   # no data: the prior
  assert probs[0, -1, 0] > 0.99 and probs[1, -1, 1] > 0.9 and probs[2, -1, 1] > 0.9


def test_dense_only_bayes_is_ridge_and_get_baselines_registers_the_bayes_predictors():
  config = get_config('tiny')
  config.task.n_dims, config.task.n_points, config.task.sparsity = 4, 8, 2
  config.task.noise_std, config.task.y_scale, config.task.curriculum = 0.5, 2.0, False
  baselines = get_baselines('mixture_regression', config)
  assert {'bayes', 'bayes_dense', 'bayes_sparse', 'ridge', 'lasso', 'least_squares'} <= set(baselines)
  rng = np.random.default_rng(1)
  xs = jnp.asarray(rng.standard_normal((5, 8, 4)), jnp.float32)
  ys = jnp.asarray(rng.standard_normal((5, 8)) * 3.0, jnp.float32)
  # Dense class alone: w ~ N(0, y_scale^2 I), noise 0.5^2 -> ridge at alpha = 0.25 / 4.
  np.testing.assert_allclose(np.asarray(baselines['bayes_dense'](xs, ys)),
                             np.asarray(baselines['ridge'](xs, ys)), atol=2e-4, rtol=1e-4)
  with pytest.raises(ConfigError, match='config.task.sparsity='):
    mixture_bayes([dict(name='sparse', weight=1.0, support_size=10, variance=1.0)], 40, 0.1)
