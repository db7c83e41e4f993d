"""End-to-end checks of analysis/regression_eval.py with fake models and stand-in baselines."""
import json
import math
import sys
import types

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from analysis import regression_eval
from analysis.base import ModelFns
from data.base import TASKS, ConfigError

D, N = 4, 9


def make_config(name, **overrides):
  task = dict(TASKS[name].default_config())
  task.update(n_dims=D, n_points=N, name=name)
  task.update(overrides)
  return ml_collections.ConfigDict({'task': task})


def make_task(config):
  return TASKS[config.task.name](config.task)


def np_bootstrap_ci(errors_SxN, num_resamples=1000, seed=0):
  """Stand-in for analysis.stats.bootstrap_ci: percentile bootstrap of the mean over axis 0."""
  errors = np.asarray(errors_SxN, np.float64)
  rng = np.random.default_rng(seed)
  index = rng.integers(0, len(errors), size=(num_resamples, len(errors)))
  means = errors[index].mean(axis=1)
  return errors.mean(axis=0), np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)


def pinv_least_squares(xs_BxNxD, ys_BxN):
  """Stand-in baseline: min-norm least squares on pairs < i, evaluated at x_i (0 for i = 0)."""
  xs, ys = np.asarray(xs_BxNxD, np.float64), np.asarray(ys_BxN, np.float64)
  preds = np.zeros(ys.shape)
  for i in range(1, xs.shape[1]):
    w_BxD = np.einsum('bdi,bi->bd', np.linalg.pinv(xs[:, :i]), ys[:, :i])
    preds[:, i] = np.einsum('bd,bd->b', w_BxD, xs[:, i])
  return preds


def zero_predictor(xs_BxNxD, ys_BxN):
  return np.zeros(np.shape(ys_BxN))


@pytest.fixture
def stand_ins(monkeypatch):
  """Installs stand-in analysis.stats / baselines.regression; returns the baselines dict."""
  baselines = {}
  stats = types.ModuleType('analysis.stats')
  stats.bootstrap_ci = np_bootstrap_ci
  fake = types.ModuleType('baselines.regression')
  fake.get_baselines = lambda task_name, config: dict(baselines)
  monkeypatch.setitem(sys.modules, 'analysis.stats', stats)
  monkeypatch.setitem(sys.modules, 'baselines.regression', fake)
  return baselines


class FakeModel:
  """A ModelFns.predict that reads the model inputs and answers with least squares (lstsq).

  It de-interleaves task.model_inputs(batch) (so the layout is exercised), writes its
  prediction at the x positions and junk at the y positions, and records batch sizes.
  """

  def __init__(self, task, kind='lstsq'):
    self.task, self.kind, self.batch_sizes = task, kind, []

  def __call__(self, batch):
    features = np.asarray(self.task.model_inputs(batch), np.float64)
    self.batch_sizes.append(features.shape[0])
    xs, ys = features[:, 0::2], features[:, 1::2, 0]
    outputs = np.full(features.shape[:2] + (1,), 123.0)
    for b in range(xs.shape[0]):
      for i in range(xs.shape[1]):
        pred = 0.0
        if self.kind == 'lstsq' and i > 0:
          w = np.linalg.lstsq(xs[b, :i], ys[b, :i], rcond=None)[0]
          pred = xs[b, i] @ w
        outputs[b, 2 * i, 0] = pred
    return jnp.asarray(outputs, jnp.float32)


def run(suite, config, model_kind='lstsq', num_prompts=24, batch_size=16):
  task = make_task(config)
  fake = FakeModel(task, model_kind)
  result = regression_eval.run_suite(suite, ModelFns(predict=fake), task, config,
                                     num_prompts=num_prompts, seed=3, batch_size=batch_size)
  return result, fake


def curve(result, name, field='mean'):
  return np.array([np.nan if v is None else v for v in result['curves'][name][field]])


@pytest.mark.parametrize('suite', ['in_distribution', 'orthant', 'orthogonal'])
def test_least_squares_model_matches_least_squares_baseline(stand_ins, suite):
  stand_ins.update(least_squares=pinv_least_squares, zero=zero_predictor)
  result, fake = run(suite, make_config('linear_regression'))
  positions = D if suite == 'orthogonal' else N
  assert result['num_examples'] == list(range(positions))
  for field in ('mean', 'lo', 'hi'):
    np.testing.assert_allclose(curve(result, 'model', field), curve(result, 'least_squares', field),
                               rtol=1e-4, atol=1e-6)
  ls, zero = curve(result, 'least_squares'), curve(result, 'zero')
  if suite == 'orthogonal':
    # The query is orthogonal to every in-context x: min-norm least squares predicts 0.
    np.testing.assert_allclose(ls, zero, rtol=1e-3, atol=1e-4)
  else:
    assert np.all(ls[D + 1:] < 1e-6)  # noise-free labels: exact once i > d
    assert np.all(ls[1:D] > 0.05)
  # every model call had the same (padded) number of rows
  assert set(fake.batch_sizes) == {16}


@pytest.mark.parametrize('name,normaliser', [('linear_regression', D),
                                             ('sparse_linear_regression', 2),
                                             ('decision_tree', 1)])
def test_zero_predictor_scores_one(stand_ins, name, normaliser):
  overrides = dict(sparsity=2) if name == 'sparse_linear_regression' else {}
  result, _ = run('in_distribution', make_config(name, **overrides), model_kind='zero',
                  num_prompts=512, batch_size=512)
  assert result['normaliser'] == normaliser and result['n_dims'] == D
  mean = curve(result, 'model')
  assert abs(mean.mean() - 1.0) < 0.12
  assert np.all(np.abs(mean - 1.0) < 0.3)
  assert set(result['curves']) == {'model'}


def test_independent_of_batch_size_and_padded(stand_ins):
  stand_ins.update(least_squares=pinv_least_squares)
  config = make_config('linear_regression')
  for suite in ('in_distribution', 'overlapping'):
    small, fake = run(suite, config, batch_size=7)
    big, _ = run(suite, config, batch_size=64)
    assert small == big
    assert set(fake.batch_sizes) == {7}
    rows = 24 * N if suite == 'overlapping' else 24
    assert len(fake.batch_sizes) == math.ceil(rows / 7)


def test_capped_baseline_scores_first_prompts(stand_ins):
  def capped(xs, ys):
    assert len(xs) <= 5
    return pinv_least_squares(xs, ys)[:5]
  capped.max_prompts = 5
  capped.jittable = False
  stand_ins.update(least_squares=pinv_least_squares, capped=capped)
  config = make_config('linear_regression')
  result, _ = run('in_distribution', config)
  assert result['curves']['capped']['num_prompts'] == 5
  assert result['curves']['least_squares']['num_prompts'] == 24
  first_five, _ = run('in_distribution', config, num_prompts=5)
  np.testing.assert_allclose(curve(result, 'capped'), curve(first_five, 'least_squares'),
                             rtol=1e-6)
  query, _ = run('orthant', config)
  assert query['curves']['capped']['num_prompts'] == math.ceil(5 / N)


def test_json_plot_and_table(stand_ins, tmp_path):
  stand_ins.update(least_squares=pinv_least_squares, zero=zero_predictor)
  result, _ = run('in_distribution', make_config('linear_regression'))
  text = json.dumps(result, allow_nan=False)
  assert json.loads(text) == result
  for key in ('suite', 'task', 'n_dims', 'num_prompts', 'normaliser', 'num_examples', 'curves'):
    assert key in result
  for name in result['curves']:
    mean, lo, hi = (curve(result, name, f) for f in ('mean', 'lo', 'hi'))
    assert np.all(lo <= mean + 1e-12) and np.all(mean <= hi + 1e-12)
  for log_y in (False, True):
    png = tmp_path / f'curve_{log_y}.png'
    regression_eval.plot(result, str(png), log_y=log_y)
    import matplotlib.image
    image = matplotlib.image.imread(str(png))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # not blank
  table = regression_eval.error_table(result, [0, 3, 8]).splitlines()
  assert table[0].split('|')[2].strip() == 'model'
  assert {'least_squares', 'zero'} <= {c.strip() for c in table[0].split('|')}
  assert len(table) == 2 + 3
  model_at_3 = float(table[3].split('|')[2].split('[')[0])
  assert abs(model_at_3 - result['curves']['model']['mean'][3]) < 1e-3
  with pytest.raises(ConfigError, match='positions'):
    regression_eval.error_table(result, [N])


def test_unknown_suite(stand_ins):
  with pytest.raises(ConfigError, match='in_distribution'):
    run('upside_down', make_config('linear_regression'))
  assert regression_eval.SUITES[0] == 'in_distribution'


def test_with_real_baselines_and_stats():
  result, _ = run('in_distribution', make_config('linear_regression'), model_kind='zero',
                  num_prompts=64, batch_size=32)
  json.dumps(result, allow_nan=False)
  assert 'least_squares' in result['curves']
  assert np.all(curve(result, 'least_squares')[D + 1:] < 1e-3)
  assert abs(curve(result, 'model').mean() - 1.0) < 0.3


def test_distance_of_the_model_to_the_bayes_predictors():
  """A model that is least squares is at distance 0 from least squares; on a finite noisy pool
  dMMSE and ridge are reported and differ from it."""
  config = make_config('noisy_linear_regression', num_tasks=4, noise_std=0.5)
  result, _ = run('in_distribution', config, model_kind='lstsq', num_prompts=32)
  distances = result['distances']
  assert set(distances) == {'dmmse', 'ridge', 'least_squares'}
  to_lstsq = np.array([np.nan if v is None else v for v in distances['least_squares']['mean']])
  assert np.nanmax(to_lstsq) < 1e-5        # float32 pinv vs float64 lstsq
  to_dmmse = np.array(distances['dmmse']['mean'], np.float64)
  assert to_dmmse[2:].min() > 1e-3
