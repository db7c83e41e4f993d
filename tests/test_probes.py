"""Linear probes: closed-form ridge, held-out R^2, planted signals, least-squares targets."""
import numpy as np
import pytest

from analysis import probes


def test_fit_ridge_matches_normal_equations_and_dual_form():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 2))
  w, b = probes.fit_ridge(x, y, 0.7)
  xc, yc = x - x.mean(0), y - y.mean(0)
  np.testing.assert_allclose(w, np.linalg.solve(xc.T @ xc + 0.7 * np.eye(5), xc.T @ yc),
                             atol=1e-10)
  np.testing.assert_allclose(b, y.mean(0) - x.mean(0) @ w, atol=1e-10)
  # more features than prompts: the dual form gives the same solution
  x_wide = rng.normal(size=(10, 40))
  w_wide, _ = probes.fit_ridge(x_wide, y[:10], 0.3)
  xc = x_wide - x_wide.mean(0)
  np.testing.assert_allclose(
      w_wide, np.linalg.solve(xc.T @ xc + 0.3 * np.eye(40), xc.T @ (y[:10] - y[:10].mean(0))),
      atol=1e-8)


def test_r2_score_edges():
  y = np.arange(10.0)[:, None]
  assert probes.r2_score(y, y) == pytest.approx(1.0)
  assert probes.r2_score(y, np.full_like(y, y.mean())) == pytest.approx(0.0)
  assert np.isnan(probes.r2_score(np.ones((4, 1)), np.ones((4, 1))))


def test_probe_recovers_planted_linear_signal_and_not_noise():
  rng = np.random.default_rng(1)
  n, k, d = 400, 4, 32
  target = rng.normal(size=(n, k))
  a = rng.normal(size=(d, k))
  hidden = target @ a.T + 0.05 * rng.normal(size=(n, d)) + 3.0   # offset: intercept fitted
  planted = probes.probe(hidden, target)
  assert planted['r2'] > 0.98
  assert planted['nmse'] == pytest.approx(1 - planted['r2'])
  assert planted['num_train'] == 200 and planted['num_test'] == 200
  noise = probes.probe(rng.normal(size=(n, d)), target)
  assert abs(noise['r2']) < 0.15
  # scale invariance: the alpha grid follows the features' scale
  scaled = probes.probe(1e3 * hidden, target)
  assert scaled['r2'] == pytest.approx(planted['r2'], abs=1e-3)


def test_layer_position_probes_per_layer_and_position():
  rng = np.random.default_rng(2)
  n, t, d, k = 300, 3, 16, 2
  per_position = rng.normal(size=(n, t, k))
  a = rng.normal(size=(d, k))
  signal = np.einsum('ntk,dk->ntd', per_position, a)
  noise = rng.normal(size=(n, t, d))
  hidden = np.stack([noise, signal + 0.01 * noise])       # layer 0: noise, layer 1: signal
  result = probes.layer_position_probes(hidden, per_position, positions=[0, 2],
                                       target_positions=[0, 2])
  assert result['r2'].shape == (2, 2)
  assert np.all(result['r2'][1] > 0.98) and np.all(np.abs(result['r2'][0]) < 0.2)
  # by default targets[:, j] goes with positions[j]
  same = probes.layer_position_probes(hidden, per_position[:, [0, 2]], positions=[0, 2])
  np.testing.assert_allclose(same['r2'], result['r2'])
  # a mismatched target (position 1's for position 2) is not recovered
  wrong = probes.layer_position_probes(hidden, per_position[:, [1]], positions=[2])
  assert wrong['r2'][1, 0] < 0.2
  # one target per prompt: probed against every position
  result = probes.layer_position_probes(hidden, per_position[:, 1], positions=[1])
  assert result['r2'][1, 0] > 0.98


def test_least_squares_prefix_matches_lstsq():
  rng = np.random.default_rng(3)
  xs, w = rng.normal(size=(3, 7, 4)), rng.normal(size=(3, 4))
  ys = np.einsum('bnd,bd->bn', xs, w)
  ls = probes.least_squares_prefix(xs, ys)
  assert ls.shape == (3, 7, 4)
  np.testing.assert_allclose(ls[:, 0], 0.0)
  for b in range(3):
    for i in (1, 2, 3, 5):
      np.testing.assert_allclose(ls[b, i], np.linalg.lstsq(xs[b, :i], ys[b, :i], rcond=None)[0],
                                 atol=1e-8)
  np.testing.assert_allclose(ls[:, 5], w, atol=1e-8)   # determined once i >= d
  targets = probes.regression_probe_targets({'xs_BxNxD': xs, 'ys_BxN': ys}, {'w_D': w})
  assert set(targets) == {'least_squares', 'w', 'y'}
  assert targets['y'].shape == (3, 7, 1)
