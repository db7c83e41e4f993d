"""Piecewise-stationary sources (data/piecewise.py) and their predictors
(baselines/changepoint.py): the sampler's shapes, determinism, switch rates and segment
frequencies; the Bayes predictor against brute-force enumeration of every segmentation; the
stationary and sliding-window predictors against NumPy; the evaluator end to end."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import piecewise_eval
from analysis.base import ModelFns
from baselines import changepoint
from core import ConfigError
from data.base import TASKS


def _task(**overrides):
  config = dict(TASKS['piecewise_stationary'].default_config())
  config.update(overrides)
  return TASKS['piecewise_stationary'](config)


# One task for the sampler and evaluator tests, so its compiled samplers are shared.
SHARED_TASK = _task(alphabet_size=3, seq_len=48, hazard=0.1)


# ---- brute force -------------------------------------------------------------------------

def _segment_log_marginal(segment, num_symbols, alpha):
  counts = np.bincount(np.asarray(segment, int), minlength=num_symbols)
  return (math.lgamma(num_symbols * alpha) - math.lgamma(len(segment) + num_symbols * alpha)
          + sum(math.lgamma(c + alpha) - math.lgamma(alpha) for c in counts))


def _marginal(symbols, num_symbols, alpha, hazard_fn):
  """P(x_1 .. x_m): a sum over all 2^(m-1) segmentations of prior x segment evidences."""
  m = len(symbols)
  if m == 0:
    return 1.0
  total = 0.0
  for cuts in itertools.product((0, 1), repeat=m - 1):
    log_p, start, run = 0.0, 0, 0
    for i, cut in enumerate(cuts):
      run += 1
      h = hazard_fn(run)
      if cut:
        if h == 0.0:
          log_p = -math.inf
          break
        log_p += math.log(h) + _segment_log_marginal(symbols[start:i + 1], num_symbols, alpha)
        start, run = i + 1, 0
      else:
        log_p += math.log1p(-h)
    if log_p > -math.inf:
      total += math.exp(log_p + _segment_log_marginal(symbols[start:], num_symbols, alpha))
  return total


def _brute_force_predictive(symbols, num_symbols, alpha, hazard_fn):
  out = np.zeros((len(symbols), num_symbols))
  for n in range(len(symbols)):
    prefix = list(symbols[:n])
    base = _marginal(prefix, num_symbols, alpha, hazard_fn)
    for k in range(num_symbols):
      out[n, k] = _marginal(prefix + [k], num_symbols, alpha, hazard_fn) / base
  return out


@pytest.mark.parametrize('num_symbols,alpha,switch,hazard', [
    (2, 0.5, 'hazard', 0.2), (3, 1.0, 'lin', 0.0)])
def test_bayes_changepoint_equals_brute_force_enumeration(num_symbols, alpha, switch, hazard):
  rng = np.random.default_rng(num_symbols)
  symbols = rng.integers(0, num_symbols, (3, 7))
  symbols[0] = 0                                    # a run, then the others random
  hazard_fn = (lambda r: hazard) if switch == 'hazard' else (lambda r: 0.5 / r)
  got = np.asarray(changepoint.bayes_changepoint(jnp.asarray(symbols), num_symbols, alpha,
                                                 switch, hazard))
  want = np.stack([_brute_force_predictive(list(row), num_symbols, alpha, hazard_fn)
                   for row in symbols])
  np.testing.assert_allclose(got, want, atol=2e-6)
  np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)


def _ptw_partitions(lo, hi):
  """(prior, segments) of every partition of [lo, hi) under the PTW prior."""
  if hi - lo == 1:
    return [(1.0, [(lo, hi)])]
  mid = (lo + hi) // 2
  out = [(0.5, [(lo, hi)])]
  for p_left, left in _ptw_partitions(lo, mid):
    for p_right, right in _ptw_partitions(mid, hi):
      out.append((0.5 * p_left * p_right, left + right))
  return out


def test_ptw_equals_brute_force_enumeration_of_dyadic_partitions():
  rng = np.random.default_rng(1)
  for num_positions, num_symbols, alpha in ((8, 2, 0.5), (6, 3, 1.0)):
    partitions = _ptw_partitions(0, 2 ** changepoint.ptw_depth(num_positions))

    def marginal(prefix):
      return sum(prior * math.exp(sum(
          _segment_log_marginal(prefix[lo:hi], num_symbols, alpha)
          for lo, hi in segments if prefix[lo:hi])) for prior, segments in partitions)

    symbols = rng.integers(0, num_symbols, (2, num_positions))
    got = np.asarray(changepoint.bayes_predictor(jnp.asarray(symbols), num_symbols, alpha,
                                                 'ptw'))
    want = np.zeros_like(got)
    for b, row in enumerate(symbols):
      for n in range(num_positions):
        prefix = list(row[:n])
        for k in range(num_symbols):
          want[b, n, k] = marginal(prefix + [k]) / marginal(prefix)
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_no_switch_bayes_is_stationary_predictor_and_both_match_numpy():
  num_symbols, alpha = 3, 0.5
  symbols = np.random.default_rng(0).integers(0, num_symbols, (4, 40))

  @jax.jit
  def predictors(symbols_BxN):
    return (changepoint.bayes_changepoint(symbols_BxN, num_symbols, alpha, 'hazard', 0.0),
            changepoint.bayes_changepoint(symbols_BxN, num_symbols, alpha, 'hazard', 1.0),
            changepoint.stationary(symbols_BxN, num_symbols, alpha),
            changepoint.sliding_window(symbols_BxN, num_symbols, alpha, 5))

  bayes, always, stationary, window = map(np.asarray, predictors(jnp.asarray(symbols)))
  want_stationary = np.zeros_like(stationary)
  want_window = np.zeros_like(window)
  for b, row in enumerate(symbols):
    for n in range(len(row)):
      counts = np.bincount(row[:n], minlength=num_symbols) + alpha
      want_stationary[b, n] = counts / counts.sum()
      counts = np.bincount(row[max(0, n - 5):n], minlength=num_symbols) + alpha
      want_window[b, n] = counts / counts.sum()
  np.testing.assert_allclose(stationary, want_stationary, atol=1e-6)
  np.testing.assert_allclose(bayes, want_stationary, atol=1e-5)
  np.testing.assert_allclose(window, want_window, atol=1e-6)
  # With hazard 1 every symbol starts a segment: the prior predictive, uniform, everywhere.
  np.testing.assert_allclose(always, 1.0 / num_symbols, atol=1e-6)


# ---- the sampler ---------------------------------------------------------------------------

def test_sampler_shapes_determinism_segments_and_frequencies():
  task = SHARED_TASK
  batch = piecewise_eval.suite_prompts(task, 'in_distribution', 256, seed=0)
  again = piecewise_eval.suite_prompts(task, 'in_distribution', 256, seed=0)
  other = piecewise_eval.suite_prompts(task, 'in_distribution', 256, seed=1)
  assert batch['tokens_BxT'].shape == (256, 49) and batch['tokens_BxT'].dtype == np.int32
  assert batch['params_BxNxK'].shape == (256, 48, 3)
  assert task.io().vocab_size == 4 and task.io().output_dim == 3 and task.io().seq_len == 49
  for key in batch:
    np.testing.assert_array_equal(batch[key], again[key])
  assert not np.array_equal(batch['symbols_BxN'], other['symbols_BxN'])
  tokens, symbols = batch['tokens_BxT'], batch['symbols_BxN']
  assert (tokens[:, 0] == 3).all() and (tokens[:, 1:] == symbols).all()
  assert symbols.min() >= 0 and symbols.max() <= 2
  np.testing.assert_array_equal(batch['loss_mask_BxT'][:, 0], 0.0)
  np.testing.assert_array_equal(batch['loss_mask_BxT'][:, 1:], 1.0)
  params, starts = batch['params_BxNxK'], batch['segment_start_BxN']
  np.testing.assert_allclose(params.sum(-1), 1.0, atol=1e-5)
  assert (starts[:, 0] == 1).all()
  # Parameters are constant within a segment and change at every switch.
  same = np.all(params[:, 1:] == params[:, :-1], axis=-1)
  np.testing.assert_array_equal(same, starts[:, 1:] == 0)
  # The switch rate is the hazard (256 x 47 Bernoulli draws: standard error 0.0028).
  assert abs(starts[:, 1:].mean() - 0.1) < 0.012
  # Each symbol is drawn from its own segment's theta: P(x_n) under theta_n averages
  # E[sum_k theta_k^2] (= 0.6 for Dirichlet(1/2), K = 3), less under any other segment's theta.
  own = np.take_along_axis(params, symbols[..., None], -1)[..., 0].mean()
  assert abs(own - np.sum(params ** 2, -1).mean()) < 0.01            # SE 0.003
  shifted = np.take_along_axis(params[:, 1:], symbols[:, :-1, None], -1)[..., 0]
  at_switch = starts[:, 1:] == 1
  assert shifted[at_switch].mean() < own - 0.1                      # the next segment's theta


def test_stationary_split_has_one_segment_and_frequencies_match_it():
  batch = piecewise_eval.suite_prompts(SHARED_TASK, 'stationary', 256, seed=0)
  assert (batch['segment_start_BxN'][:, 1:] == 0).all()
  symbols, theta = batch['symbols_BxN'], batch['params_BxNxK'][:, 0]
  counts_BxK = np.stack([np.bincount(row, minlength=3) for row in symbols])
  # Multinomial counts: E sum_k (c_k - N theta_k)^2 = N (1 - sum_k theta_k^2).
  spread = np.sum((counts_BxK - 48 * theta) ** 2, 1) / 48
  np.testing.assert_allclose(spread.mean(), np.mean(1 - np.sum(theta ** 2, 1)), rtol=0.15)
  assert np.abs(counts_BxK / 48 - theta).mean() < 0.06


def test_sampler_lin_segment_lengths_and_dirichlet_statistics():
  task = _task(alphabet_size=3, seq_len=16, switch='lin', concentration=0.5)
  batch = jax.jit(lambda key: task.sample_split(key, 4000, 'in_distribution'))(
      jax.random.key(3))
  starts = np.asarray(batch['segment_start_BxN'])
  # First segment length L: P(L = l) = prod_{r < l} (1 - 1/(2r)) * 1/(2l).
  later = np.where(starts[:, 1:].any(1), np.argmax(starts[:, 1:], axis=1) + 1, 16)
  survive, expected = 1.0, []
  for length in range(1, 5):
    expected.append(survive * 0.5 / length)
    survive *= 1 - 0.5 / length
  observed = [np.mean(later == length) for length in range(1, 5)]
  np.testing.assert_allclose(observed, expected, atol=0.025)      # SE <= 0.008
  # Segment distributions: mean 1/K, variance (1/K)(1 - 1/K) / (K alpha + 1) per coordinate.
  theta = np.asarray(batch['params_BxNxK'])[:, 0]
  np.testing.assert_allclose(theta.mean(0), 1 / 3, atol=0.02)
  np.testing.assert_allclose(theta.var(0), (1 / 3) * (2 / 3) / 2.5, rtol=0.1)


def test_sampler_ptw_switches_at_dyadic_points_with_their_prior_probability():
  task = _task(alphabet_size=2, seq_len=7, switch='ptw')           # depth 3, 8 leaves
  # The switch structure alone (the symbols are drawn as for every prior, tested above).
  starts = np.asarray(jax.jit(lambda key: task._segment_starts(key, 4000, 'in_distribution'))(
      jax.random.key(4)))
  # Position 4 splits the root (1/2); 2 and 6 need the root split too (1/4); odd ones 1/8.
  expected = [1.0, 1 / 8, 1 / 4, 1 / 8, 1 / 2, 1 / 8, 1 / 4]
  np.testing.assert_allclose(starts.mean(0), expected, atol=0.025)  # SE <= 0.008
  # A quarter point switches only when the root split: never 2 (or 6) without 4.
  assert not np.any((starts[:, 2] | starts[:, 6]) & (starts[:, 4] == 0))


def test_config_file_and_bad_config_values_name_the_key():
  from configs import piecewise_stationary
  config = piecewise_stationary.get_config('ptw,tiny')
  task = TASKS['piecewise_stationary'](config.task)
  assert (task.switch, task.num_positions, task.num_symbols) == ('ptw', 64, 2)
  assert piecewise_stationary.get_config('standard').task.switch == 'ptw'
  with pytest.raises(ConfigError, match="config argument 'ptw,lin,tiny' is invalid"):
    piecewise_stationary.get_config('ptw,lin,tiny')
  for key, value in (('alphabet_size', 1), ('switch', 'geometric'), ('hazard', 1.5),
                     ('concentration', 0.0), ('seq_len', 0), ('bogus', 1)):
    with pytest.raises(ConfigError, match=f'task.{key}={value!r}'):
      _task(**{key: value})


# ---- evaluation ----------------------------------------------------------------------------

def test_evaluator_scores_bayes_logits_as_bayes_and_orders_predictors(tmp_path):
  task = SHARED_TASK

  @jax.jit
  def bayes_model(batch):
    probs = task.bayes_probs(batch)
    return jnp.log(jnp.concatenate([probs, probs[:, -1:]], axis=1))   # T = N + 1 read-outs

  result = piecewise_eval.run_suite('in_distribution', ModelFns(predict=bayes_model), task,
                                    None, num_prompts=256, seed=2, batch_size=256)
  metrics = result['metrics']
  assert abs(metrics['model']['excess_over_bayes']['mean']) < 1e-3
  assert abs(metrics['oracle']['cumulative_regret']['mean']) < 1e-4
  # The Bayes predictor has the least expected log loss of all that do not know theta.
  for name in ('stationary', 'window_8', 'window_32'):
    assert metrics[name]['excess_over_bayes']['lo'] > 0, name
  # Task-side training metric agrees: zero excess at every position.
  curves = jax.jit(lambda b: task.position_metrics(bayes_model(b), b))(
      {k: jnp.asarray(v[:16]) for k, v in piecewise_eval.suite_prompts(
          task, 'in_distribution', 16, 0).items()})
  np.testing.assert_allclose(curves['excess_over_bayes'], 0.0, atol=1e-4)
  piecewise_eval.plot(result, str(tmp_path / 'p.png'))
  assert (tmp_path / 'p.png').stat().st_size > 0
  x, y = piecewise_eval.seed_curves(result)['model regret']
  assert len(x) == len(y) == 48
