"""Boolean function classes (data/boolean.py), their learners (baselines/boolean.py) and the
evaluator (analysis/boolean_eval.py): samplers against the classes' definitions, baselines
against brute force."""
import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import boolean_eval
from analysis.base import ModelFns
from baselines import boolean as bb
from data.base import ConfigError
from data.boolean import FUNCTIONS, BooleanFunctions


def make_task(function, n_dims=5, n_points=12, **extra):
  return BooleanFunctions({'name': 'boolean_functions', 'function': function,
                           'n_dims': n_dims, 'n_points': n_points, **extra})


def sample_all(tasks, seed, batch_size):
  """A batch of each task as numpy arrays, from one compiled call (compilations dominate the
  cost of these tests; eager sampling would compile every primitive)."""
  batches = jax.jit(lambda key: [t.sample(key, batch_size) for t in tasks])(
      jax.random.key(seed))
  return [{k: np.asarray(v) for k, v in batch.items()} for batch in batches]


def definition(function, w, bias, x):
  """The class's label of x, from its definition (not from x.w - bias)."""
  literals = [(j, w[j]) for j in range(len(w)) if w[j] != 0]
  if function == 'conjunction':
    return 1 if all(x[j] == s for j, s in literals) else -1
  if function == 'disjunction':
    return 1 if any(x[j] == s for j, s in literals) else -1
  if function == 'sparse_parity':
    return 1 if sum(x[j] == 1 for j, _ in literals) % 2 == 1 else -1
  if function == 'majority':
    plus = sum(x[j] == 1 for j, _ in literals)
    return 1 if plus > len(literals) - plus else -1
  return 1 if float(np.dot(w, x)) > bias else -1   # threshold, halfspace


def test_sampler_shape_determinism_and_definition():
  tasks = [make_task(function) for function in FUNCTIONS]
  draw = jax.jit(lambda key: [t.sample_with_functions(key, 16) for t in tasks])
  drawn, again, other = draw(jax.random.key(3)), draw(jax.random.key(3)), draw(jax.random.key(4))
  for function, task, (batch, params), (batch2, _), (batch3, _) in zip(
      FUNCTIONS, tasks, drawn, again, other):
    assert batch['xs_BxNxD'].shape == (16, 12, 5) and batch['ys_BxN'].shape == (16, 12)
    for key in batch:
      np.testing.assert_array_equal(batch[key], batch2[key])
    assert not np.array_equal(batch['xs_BxNxD'], batch3['xs_BxNxD'])
    xs, ys = np.asarray(batch['xs_BxNxD']), np.asarray(batch['ys_BxN'])
    assert set(np.unique(xs)) <= {-1.0, 1.0} and set(np.unique(ys)) <= {-1.0, 1.0}
    w, bias = np.asarray(params['w_D']), np.asarray(params['bias'])
    for b in range(16):
      expected = [definition(function, w[b], bias[b], x) for x in xs[b]]
      np.testing.assert_array_equal(ys[b], expected, err_msg=function)
    if function == 'sparse_parity':
      np.testing.assert_array_equal((w != 0).sum(1), 2)
    model_inputs = np.asarray(task.model_inputs(batch))
    assert model_inputs.shape == (16, 24, 5)
    np.testing.assert_array_equal(model_inputs[:, 0::2], xs)
    np.testing.assert_array_equal(model_inputs[:, 1::2, 0], ys)
    np.testing.assert_array_equal(model_inputs[:, 1::2, 1:], 0.0)


def test_planting_and_prior():
  """Planted points are positives of the conjunction / negatives of the disjunction; sampled
  functions follow the enumerated prior."""
  planted = sample_all([make_task(f, planted_fraction=1.0)
                        for f in ('conjunction', 'disjunction')], 0, 64)
  assert np.all(planted[0]['ys_BxN'] == 1.0) and np.all(planted[1]['ys_BxN'] == -1.0)
  for function in ('threshold',):   # literals as conjunctions' and disjunctions', and a bias
    task = make_task(function, n_dims=2)
    params, log_prior = task.hypotheses()
    np.testing.assert_allclose(np.exp(log_prior).sum(), 1.0, atol=1e-6)
    drawn = jax.jit(jax.vmap(task.draw_function))(jax.random.split(jax.random.key(2), 4000))
    table = np.concatenate([params['w_D'], params['bias'][:, None]], 1)
    drawn_rows = np.concatenate([np.asarray(drawn['w_D']),
                                 np.asarray(drawn['bias'])[:, None]], 1)
    rows, index = np.unique(np.concatenate([table, drawn_rows]), axis=0, return_inverse=True)
    assert len(rows) == len(table)     # every drawn function is one of the enumerated ones
    index = np.ravel(index)
    freq = np.bincount(index[len(table):], minlength=len(rows))[index[:len(table)]] / 4000
    p = np.exp(log_prior)
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / 4000) + 2e-3), function


def test_bad_config_is_one_line():
  for key, value in (('function', 'xor'), ('n_dims', 0), ('planted_fraction', 1.5),
                     ('parity_size', 9), ('bogus', 1)):
    with pytest.raises(ConfigError, match=f'task.{key}') as err:
      make_task(**{'function': 'sparse_parity', key: value})
    assert '\n' not in str(err.value)
  with pytest.raises(ConfigError, match='hypotheses'):
    make_task('halfspace', n_dims=12).hypotheses()


def small_prompts(function, batch=24, n_dims=4, n_points=10, seed=0, **extra):
  task = make_task(function, n_dims=n_dims, n_points=n_points, **extra)
  b, = sample_all([task], seed, batch)
  return task, b['xs_BxNxD'], b['ys_BxN']


def brute_elimination(function, xs, ys):
  """Literal sets kept explicitly, one example at a time."""
  preds = np.zeros(ys.shape)
  for b in range(len(xs)):
    literals = {(j, s) for j in range(xs.shape[2]) for s in (-1, 1)}
    for i, (x, y) in enumerate(zip(xs[b], ys[b])):
      if function == 'conjunction':
        preds[b, i] = 1 if all(x[j] == s for j, s in literals) else -1
        if y > 0:
          literals = {(j, s) for j, s in literals if x[j] == s}
      else:
        preds[b, i] = 1 if any(x[j] == s for j, s in literals) else -1
        if y < 0:
          literals = {(j, s) for j, s in literals if x[j] != s}
  return preds


def test_elimination_matches_brute_force_and_makes_no_false_positives():
  functions = ('conjunction', 'disjunction')
  batches = sample_all([make_task(f, n_dims=5, n_points=16) for f in functions], 0, 24)
  for function, batch in zip(functions, batches):
    xs, ys = batch['xs_BxNxD'], batch['ys_BxN']
    preds = np.asarray(bb.elimination(function)(xs, ys))
    np.testing.assert_array_equal(preds, brute_elimination(function, xs, ys))
    # the kept hypothesis is the most specific consistent one: a conjunction's elimination
    # never calls a negative positive, the disjunction's dual never calls a positive negative
    wrong = preds != ys
    assert np.all(ys[wrong] == (1 if function == 'conjunction' else -1))


def test_gf2_elimination_is_bayes_for_all_parities_and_matches_brute_force():
  task, xs, ys = small_prompts('sparse_parity', n_dims=4, n_points=10, batch=16)
  preds = bb.gf2_elimination()(xs, ys)
  # brute force: all 2^n parities consistent with the examples; their votes on the query
  subsets = np.array(list(itertools.product([0.0, 1.0], repeat=4)), np.float32)
  bits = (xs + 1) / 2
  votes = np.where(np.einsum('bnd,md->bmn', bits, subsets) % 2 == 1, 1.0, -1.0)
  consistent = np.ones((16, len(subsets)), bool)
  for i in range(10):
    share = np.where(consistent.any(1), (votes[:, :, i] * consistent).sum(1) /
                     np.maximum(consistent.sum(1), 1), 0.0)
    np.testing.assert_allclose(preds[:, i], share, atol=1e-6)   # +-1 or exactly 0
    consistent &= votes[:, :, i] == ys[:, None, i]
  # the Bayes predictor over all parities under a uniform prior (enumeration) agrees
  all_parities = bb.bayes_from_hypotheses(
      task.labels, lambda params, labels: jnp.zeros(labels.shape),
      {'w_D': subsets, 'bias': np.zeros(len(subsets), np.float32)},
      np.full(len(subsets), -math.log(len(subsets))))
  np.testing.assert_allclose(np.asarray(all_parities(xs, ys)), preds, atol=1e-5)
  assert np.any(preds == 0) and np.any(preds != 0)


def brute_bayes(task, xs, ys):
  """P(y = 1 | pairs < i, x_i) - P(y = -1 | ...), from the generative process enumerated
  coin by coin: the function (its prior by counting the sampler's choices), the planting coin,
  and every uniform input."""
  n, p, r = task.n_dims, task.literal_prob, task.planted_fraction
  cube = list(itertools.product([-1.0, 1.0], repeat=n))
  hyps = []
  for w in itertools.product([0.0, 1.0, -1.0], repeat=n):
    if task.function == 'sparse_parity':
      if sum(v == 1.0 for v in w) != task.cfg['parity_size'] or -1.0 in w:
        continue
      prior = 1.0 / math.comb(n, task.cfg['parity_size'])
    else:
      prior = math.prod(1 - p if v == 0 else p / 2 for v in w)
    sign = 1.0 if task.function == 'conjunction' else -1.0
    p_x = {}
    for z in cube:
      p_x[z] = p_x.get(z, 0.0) + (1 - r) / len(cube)
      planted = tuple(sign * v if v != 0 else zj for v, zj in zip(w, z))
      p_x[planted] = p_x.get(planted, 0.0) + r / len(cube)
    label = {z: definition(task.function, np.array(w), 0.0, z) for z in cube}
    hyps.append((prior, p_x, label))
  out = np.zeros(ys.shape)
  for b in range(len(xs)):
    for i in range(xs.shape[1]):
      mass = {1: 0.0, -1: 0.0}
      for prior, p_x, label in hyps:
        weight = prior
        for j in range(i):
          x = tuple(xs[b, j])
          weight *= p_x[x] * (label[x] == ys[b, j])
        query = tuple(xs[b, i])
        mass[label[query]] += weight * p_x[query]
      out[b, i] = (mass[1] - mass[-1]) / (mass[1] + mass[-1])
  return out


@pytest.mark.parametrize('function', ['conjunction', 'disjunction', 'sparse_parity'])
def test_bayes_matches_brute_force_enumeration(function):
  task, xs, ys = small_prompts(function, n_dims=3, n_points=7, batch=6, seed=5)
  preds = np.asarray(bb.bayes(task, max_prompts=None)(xs, ys))
  np.testing.assert_allclose(preds, brute_bayes(task, xs, ys), atol=1e-4)


def test_nearest_neighbour_averaging_and_majority_label_match_loops():
  _, xs, ys = small_prompts('majority', n_dims=6, n_points=14, batch=10)
  nn = np.asarray(bb.nearest_neighbour()(xs, ys))
  avg = np.asarray(bb.averaging()(xs, ys))
  maj = np.asarray(bb.majority_label()(xs, ys))
  for b in range(10):
    for i in range(14):
      if i == 0:
        assert nn[b, 0] == avg[b, 0] == maj[b, 0] == 0
        continue
      dist = np.sum(xs[b, :i] != xs[b, i], axis=1)
      assert np.isclose(nn[b, i], ys[b, :i][dist == dist.min()].mean())
      assert avg[b, i] == np.sign(np.dot(ys[b, :i] @ xs[b, :i], xs[b, i]))
      assert maj[b, i] == np.sign(ys[b, :i].sum())


def test_run_suite_plot_and_seed_curves(tmp_path):
  task = make_task('conjunction', n_dims=4, n_points=8)

  def oracle(batch):   # a model that reads the answer: accuracy 1 at every position
    outputs = jnp.zeros(batch['xs_BxNxD'].shape[:2] + (2, 1))
    return outputs.at[:, :, 0, 0].set(batch['ys_BxN']).reshape(outputs.shape[0], -1, 1)

  result = boolean_eval.run_suite('in_distribution', ModelFns(predict=oracle), task, None,
                                  num_prompts=40, seed=0, batch_size=16)
  assert set(result['curves']) == {'model', 'bayes', 'elimination', 'nearest_neighbour',
                                   'averaging', 'majority_label'}
  assert result['curves']['model']['mean'] == [1.0] * 8
  bayes, elim = result['curves']['bayes']['mean'], result['curves']['elimination']['mean']
  assert sum(bayes[1:]) >= sum(elim[1:]) - 0.05   # the Bayes predictor is the best on average
  # prompts and scores do not depend on the batch size
  prompts = boolean_eval.draw_prompts(task, 40, seed=0)
  scores = [boolean_eval.score_predictor(bb.gf2_elimination(), prompts['xs_BxNxD'],
                                         prompts['ys_BxN'], rows) for rows in (16, 7)]
  np.testing.assert_array_equal(scores[0], scores[1])
  assert boolean_eval.suite_task(task, 'uniform_inputs').planted_fraction == 0.0
  assert task.planted_fraction == 0.3
  json.dumps(result)
  boolean_eval.plot(result, str(tmp_path / 'acc.png'))
  assert (tmp_path / 'acc.png').stat().st_size > 1000
  x, y = boolean_eval.seed_curves(result)['model accuracy']
  assert x == list(range(8)) and y == [1.0] * 8
  assert '| 7 |' in boolean_eval.accuracy_table(result, [0, 7])
  with pytest.raises(ConfigError):
    boolean_eval.run_suite('bogus', ModelFns(predict=oracle), task, None, num_prompts=4,
                           seed=0, batch_size=4)


def test_logistic_objective_is_the_cross_entropy_of_the_read_out_as_log_odds():
  from training.objectives import OBJECTIVES
  task = make_task('majority', n_dims=4, n_points=6)
  batch = sample_all([task], seed=3, batch_size=8)[0]
  np.testing.assert_array_equal(batch['targets_BxN'], (batch['ys_BxN'] + 1) / 2)
  logits_BxN = np.random.default_rng(0).normal(size=batch['ys_BxN'].shape)

  def model(features):   # any fixed read-out: the logits placed at the x positions
    out = jnp.zeros(features.shape[:2] + (1,))
    return out.at[:, 0::2, 0].set(jnp.asarray(logits_BxN, jnp.float32))

  loss = OBJECTIVES.get('logistic_bce')(None, task)
  value, metrics = loss(model, None, {k: jnp.asarray(v) for k, v in batch.items()}, None)
  p_BxN = 1 / (1 + np.exp(-logits_BxN))
  y01 = batch['targets_BxN']
  expected = -np.mean(y01 * np.log(p_BxN) + (1 - y01) * np.log(1 - p_BxN))
  assert float(value) == pytest.approx(expected, rel=1e-5)
  assert float(metrics['accuracy']) == pytest.approx(np.mean((logits_BxN > 0) == (y01 > 0.5)))
  assert 'logistic_bce' in BooleanFunctions.objectives
