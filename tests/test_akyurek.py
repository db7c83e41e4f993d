"""Predictor matching (Akyürek et al. 2022): SPD and ILWD against closed forms, and the
numpy reference learners against the JAX baselines of baselines/regression.py and scikit-learn."""
import numpy as np
import pytest

from studies import akyurek as ak

BATCH, POINTS, DIMS, QUERIES = 6, 10, 4, 12


@pytest.fixture(scope='module')
def prompts():
  rng = np.random.default_rng(0)
  xs = rng.standard_normal((BATCH, POINTS, DIMS)).astype(np.float32)
  w = rng.standard_normal((BATCH, DIMS))
  ys = (np.einsum('bnd,bd->bn', xs, w) + 0.3 * rng.standard_normal((BATCH, POINTS)))
  queries = rng.standard_normal((QUERIES, DIMS))
  return xs, ys.astype(np.float32), queries


def test_prefix_moments_match_a_loop(prompts):
  xs, ys, _ = prompts
  a, b = ak.prefix_moments(xs, ys)
  x64, y64 = xs.astype(np.float64), ys.astype(np.float64)
  for i in (0, 1, 5, POINTS - 1):
    np.testing.assert_allclose(a[:, i], np.einsum('bjd,bje->bde', x64[:, :i], x64[:, :i]),
                               atol=1e-9)
    np.testing.assert_allclose(b[:, i], np.einsum('bj,bjd->bd', y64[:, :i], x64[:, :i]),
                               atol=1e-9)


def test_ridge_weights_match_an_augmented_least_squares_fit(prompts):
  """Ridge on i examples = least squares on [X; sqrt(alpha) I] w = [y; 0]."""
  xs, ys, _ = prompts
  w = ak.ridge_weights(xs, ys, 0.7)
  for i in (1, 3, 7):
    design = np.concatenate([xs[2, :i], np.sqrt(0.7) * np.eye(DIMS)]).astype(np.float64)
    target = np.concatenate([ys[2, :i], np.zeros(DIMS)]).astype(np.float64)
    np.testing.assert_allclose(w[2, i], np.linalg.lstsq(design, target, rcond=None)[0],
                               rtol=1e-9, atol=1e-10)
  assert np.all(w[:, 0] == 0)


@pytest.mark.parametrize('name', ['ols', 'gd_trace'])
def test_implicit_weight_of_a_linear_learner_is_its_explicit_weight(prompts, name):
  """The JAX baselines, queried at perturbed x_i, have as implicit weights the numpy
  closed forms; so SPD and ILWD to the matching reference are 0."""
  from baselines import regression as baselines
  xs, ys, queries = prompts
  if name == 'ols':
    fn, w_ref = baselines.least_squares(), ak.ridge_weights(xs, ys, 0.0)
  else:   # the baseline's default rate, 1 / trace of the prefix's mean x x^T
    fn, w_ref = baselines.gd(num_steps=4), ak.gd_weights(xs, ys, 1.0, 4, normalized=True)
  predict = lambda x, y: np.asarray(fn(x, y))
  w_implicit = ak.implicit_weights(predict, xs, ys, queries)
  np.testing.assert_allclose(w_implicit, w_ref, rtol=2e-3, atol=2e-3)
  assert ak.ilwd_curve(w_implicit, w_ref).max() < 1e-5
  spd = ak.spd_curve(predict(xs, ys), ak.linear_predictions(w_ref, xs), DIMS)
  assert spd.max() < 1e-5
  # ...and a different learner is measurably away.
  assert ak.ilwd_curve(w_implicit, ak.gd_weights(xs, ys, 0.05, 1))[2:].min() > 1e-3


def test_spd_and_ilwd_closed_forms_for_a_scaled_learner(prompts):
  """f = 2 x OLS: implicit weight 2 w_ols, SPD to OLS = mean (w_ols.x)^2 / d, ILWD to OLS =
  mean ||w_ols||^2 / d."""
  xs, ys, queries = prompts
  w_ols = ak.ridge_weights(xs, ys, 0.0)
  scaled = lambda x, y: 2.0 * ak.linear_predictions(ak.ridge_weights(x, y, 0.0), x)
  w_implicit = ak.implicit_weights(scaled, xs, ys, queries)
  # (queries pass through float32, as they would to a model)
  np.testing.assert_allclose(w_implicit, 2.0 * w_ols, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ak.ilwd_curve(2.0 * w_ols, w_ols),
                             np.mean(np.sum(w_ols ** 2, -1), 0) / DIMS, rtol=1e-12)
  np.testing.assert_allclose(ak.ilwd_curve(w_implicit, w_ols),
                             np.mean(np.sum(w_ols ** 2, -1), 0) / DIMS, rtol=1e-4)
  preds = ak.linear_predictions(w_ols, xs)
  np.testing.assert_allclose(ak.spd_curve(scaled(xs, ys), preds, DIMS),
                             np.mean(preds ** 2, 0) / DIMS, rtol=1e-9)


def test_implicit_weight_needs_enough_queries(prompts):
  xs, ys, queries = prompts
  with pytest.raises(ValueError, match='cannot determine'):
    ak.implicit_weights(lambda x, y: np.zeros(y.shape), xs, ys, queries[:DIMS - 1])


def test_gd_rate_tuning_skips_diverging_rates(prompts):
  xs, ys, _ = prompts
  rate, errors = ak.tune_gd_learning_rate(xs, ys, 10, grid=(0.05, 0.3, 50.0))
  assert errors[2] == float('inf') or errors[2] > max(errors[:2])
  assert rate == (0.05, 0.3)[int(np.argmin(errors[:2]))]



def test_gd_closed_forms(prompts):
  """One step from 0 on the mean loss: w = rate * X'y / i. Two steps: w1 - rate (A w1 - b)
  with A = X'X / i, b = X'y / i."""
  xs, ys, _ = prompts
  x64, y64 = xs.astype(np.float64), ys.astype(np.float64)
  for i in (1, 4, POINTS - 1):
    x, y = x64[:, :i], y64[:, :i]
    b = np.einsum('bj,bjd->bd', y, x) / i
    a = np.einsum('bjd,bje->bde', x, x) / i
    np.testing.assert_allclose(ak.gd_weights(xs, ys, 0.3, 1)[:, i], 0.3 * b, atol=1e-12)
    w1 = 0.3 * b
    w2 = w1 - 0.3 * (np.einsum('bde,be->bd', a, w1) - b)
    np.testing.assert_allclose(ak.gd_weights(xs, ys, 0.3, 2)[:, i], w2, atol=1e-12)
    rate = 0.3 / np.trace(a, axis1=1, axis2=2)[:, None]
    np.testing.assert_allclose(ak.gd_weights(xs, ys, 0.3, 1, normalized=True)[:, i], rate * b,
                               atol=1e-12)


def test_closest_treats_ridge_as_ols_without_noise():
  flat = lambda v: [0.0] + [v] * 3
  entry = {'noise_std': 0.0, 'spd': {'gd1': flat(0.5), 'gd10': flat(0.4), 'ridge': flat(0.1),
                                     'ols': flat(0.1)}}
  assert ak.closest(entry, 'spd') == 'ols (= ridge)'
  entry['noise_std'] = 1.0
  entry['spd']['ols'] = flat(0.3)
  assert ak.closest(entry, 'spd') == 'ridge'
