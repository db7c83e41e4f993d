"""TART's synthetic logistic regression / linear classification: sampler, baselines, evaluator."""
import functools
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

from analysis import logistic_eval
from analysis.base import ModelFns
from baselines import logistic as bl
from core import ConfigError
from data import get_task
from data.logistic import logistic_bce_loss


def make_task(**overrides):
  return get_task(ml_collections.ConfigDict(dict(name='logistic_regression', **overrides)))


@functools.lru_cache(maxsize=None)
def _jitted_sampler(task):
  return jax.jit(task.sample_with_functions, static_argnums=1)


# One small task shared by the tests below, so that its sampler and the baselines compile once.
TASK = make_task(n_dims=3, n_points=9)


def sample(task, key, batch_size, step=0):
  """(batch, functions), jitted: one compilation instead of dozens of eager kernels."""
  return _jitted_sampler(task)(key, batch_size, step)


# ---- sampler ---------------------------------------------------------------------------------

def test_shapes_determinism_and_label_values():
  task = TASK
  batch = sample(task, jax.random.key(0), 4)[0]
  assert batch['xs_BxNxD'].shape == (4, 9, 3)
  for key in ('ys_BxN', 'targets_BxN', 'point_mask_BxN'):
    assert batch[key].shape == (4, 9)
  assert set(np.unique(batch['ys_BxN'])) <= {0.0, 1.0}
  np.testing.assert_array_equal(batch['ys_BxN'], batch['targets_BxN'])
  again = sample(task, jax.random.key(0), 4)[0]
  other = sample(task, jax.random.key(1), 4)[0]
  for key in batch:
    np.testing.assert_array_equal(batch[key], again[key])
  assert not np.allclose(batch['xs_BxNxD'], other['xs_BxNxD'])
  signed = sample(make_task(n_dims=3, n_points=9, label_values='plus_minus'),
                  jax.random.key(0), 4)[0]
  np.testing.assert_array_equal(signed['targets_BxN'], batch['targets_BxN'])
  np.testing.assert_array_equal(signed['ys_BxN'], 2 * batch['targets_BxN'] - 1)
  inputs = task.model_inputs(batch)
  assert inputs.shape == (4, 18, 3)
  np.testing.assert_array_equal(inputs[:, 0::2], batch['xs_BxNxD'])
  np.testing.assert_array_equal(inputs[:, 1::2, 0], batch['ys_BxN'])
  assert not np.any(inputs[:, 1::2, 1:])


def test_logistic_labels_are_bernoulli_of_the_sigmoid():
  # weight_scale 0.5 keeps P(y=1) spread over (0, 1), so calibration is tested in every bin.
  task = make_task(n_dims=2, n_points=8, weight_scale=0.5)
  batch, functions = sample(task, jax.random.key(3), 2000)
  p = np.asarray(jax.nn.sigmoid(0.5 * jnp.einsum('bnd,bd->bn', batch['xs_BxNxD'],
                                                 functions['w_BxD']))).ravel()
  np.testing.assert_allclose(task.class_probabilities(functions['w_BxD'], batch['xs_BxNxD']),
                             p.reshape(2000, 8), atol=1e-6)
  y = np.asarray(batch['targets_BxN']).ravel()
  for lo in np.arange(0, 1, 0.2):
    inside = (p >= lo) & (p < lo + 0.2)
    sd = math.sqrt(0.25 / inside.sum())
    assert abs(y[inside].mean() - p[inside].mean()) < 4 * sd + 1e-3, lo


def test_linear_classification_is_the_sign_with_flips():
  task = make_task(n_dims=4, n_points=8, label_model='linear_classification')
  batch, functions = sample(task, jax.random.key(0), 500)
  sign = np.asarray(jnp.einsum('bnd,bd->bn', batch['xs_BxNxD'], functions['w_BxD']) > 0)
  np.testing.assert_array_equal(batch['targets_BxN'], sign.astype(np.float32))
  noisy = make_task(n_dims=4, n_points=8, label_model='linear_classification', flip_prob=0.25)
  batch, functions = sample(noisy, jax.random.key(0), 2000)
  sign = np.asarray(jnp.einsum('bnd,bd->bn', batch['xs_BxNxD'], functions['w_BxD']) > 0)
  flipped = np.mean(np.asarray(batch['targets_BxN']) != sign)
  assert abs(flipped - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 16000)
  # The oracle's belief is 1 - flip on the sign's side.
  p = noisy.class_probabilities(functions['w_BxD'], batch['xs_BxNxD'])
  np.testing.assert_allclose(p, np.where(sign, 0.75, 0.25), atol=1e-6)


def test_curriculum_zeroes_dims_and_masks_points():
  task = make_task(n_dims=8, n_points=10, curriculum=True, dims_start=2, dims_inc=2,
                   dims_interval=100, points_start=4, points_inc=3, points_interval=100)
  batch, functions = sample(task, jax.random.key(0), 3, 150)
  assert not np.any(batch['xs_BxNxD'][..., 4:]) and np.all(batch['xs_BxNxD'][..., :4] != 0)
  assert not np.any(functions['w_BxD'][:, 4:])
  np.testing.assert_array_equal(batch['point_mask_BxN'][0], [1] * 7 + [0] * 3)
  dims, points = task.curriculum_state(task.eval_step())
  assert (int(dims), int(points)) == (8, 10)
  full, _ = sample(task, jax.random.key(0), 3, task.eval_step())
  assert np.all(full['xs_BxNxD'] != 0) and np.all(full['point_mask_BxN'] == 1)


@pytest.mark.parametrize('key,value', [('label_model', 'probit'), ('flip_prob', 0.7),
                                       ('weight_scale', 0.0), ('label_values', 'pm'),
                                       ('n_points', 0), ('bogus', 1)])
def test_bad_config_is_one_line_naming_the_key(key, value):
  with pytest.raises(ConfigError) as error:
    make_task(**{key: value})
  message = str(error.value)
  assert f'task.{key}' in message and '\n' not in message


def test_objective_and_position_metrics_against_numpy():
  task = TASK
  batch = sample(task, jax.random.key(2), 4)[0]
  batch['point_mask_BxN'] = batch['point_mask_BxN'].at[:, 8].set(0.0)
  logits = np.asarray(jax.random.normal(jax.random.key(4), (4, 9))) * 3
  outputs = jnp.zeros((4, 18, 1)).at[:, 0::2, 0].set(logits)
  t, m = np.asarray(batch['targets_BxN']), np.asarray(batch['point_mask_BxN'])
  p = 1 / (1 + np.exp(-logits))
  nll = -(t * np.log(p) + (1 - t) * np.log(1 - p))
  correct = ((logits > 0) == (t > 0.5)).astype(float)
  value, metrics = jax.jit(logistic_bce_loss)(task.logits(outputs), batch)
  np.testing.assert_allclose(value, (nll * m).sum() / m.sum(), rtol=1e-5)
  np.testing.assert_allclose(metrics['accuracy'], (correct * m).sum() / m.sum(), rtol=1e-6)
  np.testing.assert_allclose(metrics['last_point_accuracy'], correct[:, 7].mean(), rtol=1e-6)
  curves = jax.jit(task.position_metrics)(outputs, batch)
  np.testing.assert_allclose(curves['loss'][:8], nll[:, :8].mean(0), rtol=1e-5)
  np.testing.assert_allclose(curves['accuracy'][:8], correct[:, :8].mean(0), rtol=1e-6)
  assert np.isnan(curves['loss'][8])


# ---- baselines -------------------------------------------------------------------------------

def _reference_fit(x, t, c):
  """scikit-learn's fit (fit_intercept=False); scipy's BFGS on the same objective when the
  prefix holds one class only (scikit-learn refuses it)."""
  if len(np.unique(t)) == 2:
    model = SklearnLogisticRegression(C=c, fit_intercept=False, tol=1e-12, max_iter=100_000)
    return model.fit(x, t).coef_[0]
  s = 2 * t - 1
  objective = lambda w: 0.5 * w @ w + c * np.sum(np.logaddexp(0, -s * (x @ w)))
  return minimize(objective, np.zeros(x.shape[1]), method='BFGS', options=dict(gtol=1e-10)).x


@pytest.mark.parametrize('separable', [True, False])
def test_prefix_logistic_regression_and_laplace_match_sklearn(separable):
  rng = np.random.default_rng(0)
  xs = rng.standard_normal((2, 9, 3))
  w = rng.standard_normal((2, 3)) * 3
  score = np.einsum('bnd,bd->bn', xs, w)
  if separable:
    t = (score > 0).astype(np.float32)
  else:
    t = (rng.random(score.shape) < 1 / (1 + np.exp(-score))).astype(np.float32)
  norms = {}
  for c in (1.0, 100.0):
    fit = bl.prefix_logistic_regression(jnp.asarray(xs, jnp.float32), jnp.asarray(t), c)
    w_fit, logits, laplace = fit['w_BxKxD'], fit['logits_BxK'], fit['laplace_BxK']
    np.testing.assert_allclose(w_fit[:, 0], 0.0)          # no context: w = 0, logit 0
    for b in range(2):
      for k in range(1, 9):
        ref = _reference_fit(xs[b, :k], t[b, :k], c)
        np.testing.assert_allclose(w_fit[b, k], ref, rtol=2e-3, atol=2e-3 * (1 + abs(ref).max()))
        np.testing.assert_allclose(logits[b, k], xs[b, k] @ ref, rtol=2e-3,
                                   atol=2e-3 * (1 + abs(ref).max()))
        # Laplace: Hessian of 0.5|w|^2/C + sum log-loss at the optimum, probit approximation.
        p = 1 / (1 + np.exp(-(xs[b, :k] @ ref)))
        hess = np.eye(3) / c + (xs[b, :k] * (p * (1 - p))[:, None]).T @ xs[b, :k]
        var = xs[b, k] @ np.linalg.solve(hess, xs[b, k])
        expected = xs[b, k] @ ref / math.sqrt(1 + math.pi * var / 8)
        np.testing.assert_allclose(laplace[b, k], expected, rtol=2e-3, atol=2e-3)
    norms[c] = np.linalg.norm(np.asarray(w_fit[:, -1]), axis=-1)
  if separable:  # without the penalty there would be no minimiser; with it |w| grows with C
    assert np.all(norms[100.0] > 2 * norms[1.0])


def test_nearest_neighbour_and_averaging_against_brute_force():
  rng = np.random.default_rng(1)
  xs = rng.standard_normal((2, 9, 3)).astype(np.float32)   # the evaluator test's shapes
  t = (rng.random((2, 9)) < 0.5).astype(np.float32)
  nn = np.asarray(bl.nearest_neighbour_logits(jnp.asarray(xs), jnp.asarray(t)))
  avg = np.asarray(bl.averaging_logits(jnp.asarray(xs), jnp.asarray(t)))
  for b in range(2):
    assert nn[b, 0] == 0 and avg[b, 0] == 0
    for k in range(1, 9):
      j = int(np.argmin([np.sum((xs[b, i] - xs[b, k]) ** 2) for i in range(k)]))
      assert nn[b, k] == (np.inf if t[b, j] == 1 else -np.inf)
      direction = sum((2 * t[b, i] - 1) * xs[b, i] for i in range(k))
      assert avg[b, k] == (np.inf if direction @ xs[b, k] > 0 else -np.inf)


def test_oracle_logits():
  batch, f = sample(TASK, jax.random.key(0), 4)
  score = np.einsum('bnd,bd->bn', batch['xs_BxNxD'], f['w_BxD'])
  np.testing.assert_allclose(TASK.oracle_logits(f['w_BxD'], batch['xs_BxNxD']), 10 * score,
                             rtol=1e-5)
  linear = make_task(n_dims=3, n_points=9, label_model='linear_classification')
  np.testing.assert_array_equal(linear.oracle_logits(f['w_BxD'], batch['xs_BxNxD']),
                                np.where(score > 0, np.inf, -np.inf))


# ---- evaluator -------------------------------------------------------------------------------

def test_run_suite_plot_and_seed_curves(tmp_path):
  # The shapes of the scikit-learn test above (2 prompts per call, 9 points, d = 3): the
  # baselines' compilations are reused.
  task = TASK
  coin = ModelFns(predict=lambda batch: jnp.zeros(batch['xs_BxNxD'].shape[:1] + (18, 1)))
  result = logistic_eval.run_suite('in_distribution', coin, task, None, num_prompts=8, seed=0,
                                   batch_size=2)
  model = result['curves']['model']
  np.testing.assert_allclose(model['accuracy']['mean'], 0.5)        # logit 0: a coin flip
  np.testing.assert_allclose(model['cross_entropy']['mean'], math.log(2), rtol=1e-6)
  oracle = result['curves']['oracle (true w)']['accuracy']['mean']
  assert np.mean(oracle) > 0.85
  assert result['curves']['nearest_neighbour']['cross_entropy'] is None
  assert {'logistic_regression (C=100)', 'laplace (C=100)'} <= set(result['curves'])
  noisy = logistic_eval.suite_task(task, 'label_noise')
  assert noisy.flip_prob == logistic_eval.LABEL_NOISE and task.flip_prob == 0.0
  assert 'laplace (C=100)' not in bl.get_baselines(noisy)  # its likelihood has no flips
  path = os.path.join(tmp_path, 'x.png')
  logistic_eval.plot(result, path)
  assert os.path.getsize(path) > 0
  x, y = logistic_eval.seed_curves(result)['model accuracy']
  assert x == list(range(9)) and len(y) == 9
  with pytest.raises(ConfigError):
    logistic_eval.run_suite('bogus', coin, task, None, num_prompts=4, seed=0, batch_size=4)


def test_configs_build_their_task():
  from configs.logistic_regression import get_config
  for variant in ('tiny', 'small', 'standard'):
    config = get_config(variant)
    task = get_task(config.task)
    assert task.eval_family == 'logistic' and config.objective.name == 'logistic_bce'
  assert get_task(get_config('standard').task).cfg['curriculum']
