"""The loop every study uses: vmapped seeds, per-seed values, scheduled evaluation, log-spaced
checkpoints, runs that start from runs, and a frozen reference beside the trained parameters."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import ConfigError
from tests.test_training import losses, params_of, tiny_config
from training.loop import restore_run, train
from training.objectives import OBJECTIVES
from training.setup import eval_steps, log_spaced_steps

ONE = jax.devices()[:1]
quiet = lambda s: None


def rows(workdir, kind='train'):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r for r in map(json.loads, f) if r.get('kind', 'train') == kind]


def test_seed_of_a_vmapped_run_equals_the_single_run(tmp_path):
  many = tiny_config(20, num_seeds=3)
  r3 = train(many, str(tmp_path / 'many'), devices=ONE, log=quiet)
  single = tiny_config(20, seed=1)
  r1 = train(single, str(tmp_path / 'one'), devices=ONE, log=quiet)
  per_seed = np.array([r['loss'] for r in rows(tmp_path / 'many')])   # steps x 3
  np.testing.assert_allclose(per_seed[:, 1], losses(tmp_path / 'one'), rtol=1e-5)
  # Batched (vmapped) products sum in another order; Adam's division by sqrt(second moment)
  # turns that float noise into ~1e-5 differences on near-zero gradients, far below the
  # 20 steps x lr 1e-3 the parameters moved (as between 1 and 8 devices).
  for a, b in zip(params_of(r3, 1), params_of(r1, 0)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-4)
  # the seeds really differ from each other
  assert not np.allclose(per_seed[:, 0], per_seed[:, 1])


def test_looped_grouped_and_vmapped_seeds_train_the_same_models(tmp_path):
  # train.seed_batch: 1 loops the 3 seeds (lax.map), 2 vmaps a group of 2 then the last one,
  # 3 vmaps all three; every layout must train the same three models.
  results = {}
  for seed_batch in (1, 2, 3):
    config = tiny_config(10, num_seeds=3)
    config.train.seed_batch = seed_batch
    results[seed_batch] = train(config, str(tmp_path / f'b{seed_batch}'), devices=ONE, log=quiet)
  for seed in range(3):
    for a, b, c in zip(*(params_of(results[k], seed) for k in (1, 2, 3))):
      np.testing.assert_allclose(a, c, rtol=1e-3, atol=2e-4)
      np.testing.assert_allclose(b, c, rtol=1e-3, atol=2e-4)
  loss = {k: np.array([r['loss'] for r in rows(tmp_path / f'b{k}')]) for k in (1, 2, 3)}
  np.testing.assert_allclose(loss[1], loss[3], rtol=1e-4)
  np.testing.assert_allclose(loss[2], loss[3], rtol=1e-4)


def test_per_seed_learning_rate_and_task_value_match_single_runs(tmp_path):
  config = tiny_config(10, num_seeds=2,
                       seed_values='train.seed=3,3;train.learning_rate=0.001,0.01')
  config.task.name = 'noisy_linear_regression'
  config.task.noise_std = 0.5
  config.train.seed_values += ';task.noise_std=0.0,2.0'
  train(config, str(tmp_path / 'vmapped'), devices=ONE, log=quiet)
  per_seed = np.array([r['loss'] for r in rows(tmp_path / 'vmapped')])
  for index, (lr, noise) in enumerate([(0.001, 0.0), (0.01, 2.0)]):
    single = tiny_config(10, seed=3, learning_rate=lr)
    single.task.name = 'noisy_linear_regression'
    single.task.noise_std = noise
    train(single, str(tmp_path / f'single{index}'), devices=ONE, log=quiet)
    np.testing.assert_allclose(per_seed[:, index], losses(tmp_path / f'single{index}'),
                               rtol=1e-5)
  lrs = rows(tmp_path / 'vmapped')[-1]['learning_rate']
  assert lrs[1] == pytest.approx(10 * lrs[0])


@pytest.mark.parametrize('train_values,match', [
    (dict(num_seeds=0), 'train.num_seeds=0'),
    (dict(num_seeds=2, seed_batch=-1), 'train.seed_batch=-1'),
    (dict(num_seeds=2, seed_values='train.learning_rate=0.1,0.2,0.3'),
     'lists 3 values; train.num_seeds=2 needs exactly 2'),
    (dict(num_seeds=2, seed_values='train.batch_size=8,16'), 'train.batch_size cannot vary'),
    (dict(num_seeds=2, seed_values='task.n_dims=4,8'), 'task.n_dims cannot vary'),
    (dict(num_seeds=2, seed_values='train.learning_rate=0.1,abc'), "'abc' is not a number"),
    (dict(num_seeds=2, seed_values='train.learning_rate=0.1,-1'), 'must be > 0'),
    (dict(learning_rate=float('inf')), 'train.learning_rate=inf'),
])
def test_bad_seed_settings_fail_before_anything_is_written(tmp_path, train_values, match):
  with pytest.raises(ConfigError, match=match):
    train(tiny_config(10, **train_values), str(tmp_path / 'w'), devices=ONE, log=quiet)
  assert not os.path.exists(tmp_path / 'w')


def test_objective_the_task_does_not_accept_fails_before_writing(tmp_path):
  config = tiny_config(10)
  config.objective.name = 'next_token'
  with pytest.raises(ConfigError, match="task 'linear_regression' accepts regression_mse"):
    train(config, str(tmp_path / 'w'), devices=ONE, log=quiet)
  config.objective.name = 'bogus'
  with pytest.raises(ConfigError, match='known objectives are classification_ce, context_preference, logistic_bce, next_token, preference, regression_mse, sft'):
    train(config, str(tmp_path / 'w'), devices=ONE, log=quiet)
  assert not os.path.exists(tmp_path / 'w')


def test_scheduled_evaluation_and_log_spaced_checkpoints(tmp_path):
  config = tiny_config(40, keep_log_checkpoints=4, keep_checkpoints=1, num_seeds=2)
  config.eval.num_log_evals = 5
  config.eval.every = 20
  config.eval.train_prompts = 32
  workdir = str(tmp_path / 'run')
  train(config, workdir, devices=ONE, log=quiet)
  expected = eval_steps(config)
  assert expected == sorted(set(log_spaced_steps(40, 5)) | {20, 40})
  evals = rows(workdir, 'eval')
  assert [r['step'] for r in evals] == expected
  assert len(evals[0]['eval/icl_score']) == 2           # one value per seed
  curves = json.load(open(os.path.join(workdir, 'eval', 'positions', 'step_40.json')))
  assert np.asarray(curves['curves']['error']).shape == (2, 8)   # seeds x positions
  # the per-position curve at step 40 is the restored model's error on the same prompts
  run = restore_run(workdir)
  from runlib.positions import make_eval_fn
  again = make_eval_fn(run['setup'], run['graphdef'], 32, config.eval.seed)(run['params'],
                                                                           run['rest'])
  np.testing.assert_allclose(np.asarray(again['error']), curves['curves']['error'], rtol=1e-4)
  assert os.path.exists(os.path.join(workdir, 'eval', 'positions', 'curves.png'))
  # last checkpoint kept, plus the log-spaced ones; the every-10 ones in between are deleted
  kept = sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())
  assert kept == sorted(set(log_spaced_steps(40, 4)) | {40})


def test_init_from_starts_from_the_other_runs_parameters(tmp_path):
  source = str(tmp_path / 'source')
  first = train(tiny_config(10), source, devices=ONE, log=quiet)
  config = tiny_config(10, init_from=source, num_seeds=2, seed=5)
  start = train(config, str(tmp_path / 'child'), devices=ONE, log=quiet, stop_after=0)
  for seed_index in (0, 1):
    for a, b in zip(params_of(start, seed_index), params_of(first, 0)):
      np.testing.assert_array_equal(a, b)
  # an explicit step of the source: DIR:STEP
  config = tiny_config(10, init_from=f'{source}:10')
  train(config, str(tmp_path / 'child2'), devices=ONE, log=quiet)


@pytest.mark.parametrize('key,value,match', [
    ('model.d_model', 64, "model.d_model \\(32 there, 64 here\\)"),
    ('model.mixer', 'mamba', "model.mixer \\('attention' there, 'mamba' here\\)"),
    ('task.n_dims', 6, "input_dim \\(4 there, 6 here\\)"),
])
def test_init_from_a_mismatched_run_is_one_line(tmp_path, key, value, match):
  source = str(tmp_path / 'source')
  train(tiny_config(10), source, devices=ONE, log=quiet)
  config = tiny_config(10, init_from=source)
  section, name = key.split('.')
  config[section][name] = value
  with pytest.raises(ConfigError, match=match):
    train(config, str(tmp_path / 'child'), devices=ONE, log=quiet)
  assert not os.path.exists(tmp_path / 'child')
  with pytest.raises(ConfigError, match='is not a directory'):
    train(tiny_config(10, init_from=str(tmp_path / 'nowhere')), str(tmp_path / 'c'),
          devices=ONE, log=quiet)


def _anchored(objective_config, task):
  """Regression loss plus a pull towards the frozen reference's predictions."""
  def loss(model, reference, batch, key):
    inputs = task.model_inputs(batch)
    preds = task.predictions(model(inputs))
    ref = task.predictions(reference(inputs))
    mse = jnp.mean(jnp.square(preds - batch['ys_BxN']))
    return mse + 0.1 * jnp.mean(jnp.square(preds - ref)), {'ref_gap': jnp.mean(jnp.abs(preds - ref))}
  return loss


def test_frozen_reference_never_changes_and_survives_resume(tmp_path):
  source = str(tmp_path / 'source')
  first = train(tiny_config(10), source, devices=ONE, log=quiet)
  with OBJECTIVES.temporary('anchored', _anchored, needs_reference=True):
    import data.regression as regression
    accepted = regression.LinearRegression.objectives
    regression.LinearRegression.objectives = accepted + ('anchored',)
    try:
      config = tiny_config(20, init_from=source)
      config.objective.name = 'anchored'
      workdir = str(tmp_path / 'child')
      part = train(config, workdir, devices=ONE, log=quiet, stop_after=10)
      # the reference is stored once, beside (not inside) the checkpoints
      assert os.path.isdir(os.path.join(workdir, 'reference', 'params'))
      shutil.rmtree(source)                 # resume must not need the source run any more
      done = train(config, workdir, devices=ONE, log=quiet)
      from runlib.reference import ReferenceStore
      from training.setup import make_setup
      frozen, shared = ReferenceStore(workdir, make_setup(config, ONE).mesh).restore()
      for a, b in zip(jax.tree.leaves(jax.device_get(frozen)), params_of(first, 0)):
        np.testing.assert_array_equal(np.asarray(a)[0], b)   # never changed
      moved = [np.max(np.abs(a - b)) for a, b in zip(params_of(done), params_of(first))]
      assert max(moved) > 1e-4                                # the policy did train
      gaps = [r['ref_gap'] for r in rows(workdir)]
      assert gaps[0] < gaps[-1]           # starts at the reference, moves away from it
      # without init_from the objective is refused before anything is written
      config.train.init_from = ''
      with pytest.raises(ConfigError, match='needs a frozen reference'):
        train(config, str(tmp_path / 'x'), devices=ONE, log=quiet)
    finally:
      regression.LinearRegression.objectives = accepted


def test_full_suites_on_the_schedule_match_a_later_evaluation(tmp_path):
  config = tiny_config(20)
  config.eval.num_log_evals = 2
  config.eval.train_suites = 'in_distribution,scaled_x'
  config.eval.train_prompts = 16
  workdir = str(tmp_path / 'run')
  from analysis.train_suites import training_hooks
  with pytest.raises(ConfigError, match='eval.train_suites.*only when given their hook'):
    train(config, workdir, devices=ONE, log=quiet)     # training alone cannot run the suites
  assert not os.path.exists(workdir)
  train(config, workdir, devices=ONE, log=quiet, hooks=training_hooks(config))
  evals = [r for r in rows(workdir, 'eval') if 'eval/scaled_x/model_error_last' in r]
  assert [r['step'] for r in evals] == [1, 20]
  during = json.load(open(os.path.join(workdir, 'eval', 'in_distribution', 'step_20.json')))
  from analysis.evaluators import get_evaluator
  from analysis.run_eval import evaluate_seed
  after = evaluate_seed(restore_run(workdir), 0, get_evaluator('regression'),
                        'in_distribution', num_prompts=16, seed=config.eval.seed)
  np.testing.assert_allclose(during['curves']['model']['mean'],
                             after['curves']['model']['mean'], rtol=1e-5)
  assert evals[-1]['eval/in_distribution/model_error_last'] == pytest.approx(
      after['curves']['model']['mean'][-1], rel=1e-5)
  config.eval.train_suites = 'in_distribution,upside_down'
  with pytest.raises(ConfigError, match='eval.train_suites.*suites of this task'):
    training_hooks(config)


def test_weight_forgetting_redraws_only_the_embeddings(tmp_path):
  plain = train(tiny_config(5), str(tmp_path / 'plain'), devices=ONE, log=quiet)
  forget = train(tiny_config(5, forget_every=5), str(tmp_path / 'forget'), devices=ONE,
                 log=quiet)
  same, redrawn = 0, 0
  flat = lambda r: jax.tree_util.tree_flatten_with_path(jax.device_get(r['state']['params']))[0]
  for (path, a), (_, b) in zip(flat(plain), flat(forget)):
    if 'read_in' in jax.tree_util.keystr(path):
      assert not np.allclose(a, b)
      if a.ndim == 3:
        assert np.std(b) == pytest.approx(0.02, rel=0.2)   # a fresh N(0, 0.02) draw
      redrawn += 1
    else:
      # the rest learned as before (to the Adam noise of near-zero gradients, as 1 vs 8 devices)
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-4)
      same += 1
  assert redrawn >= 1 and same > 5
  with pytest.raises(ConfigError, match='top-level modules of this model'):
    train(tiny_config(5, forget_every=5, forget_modules='embedz'), str(tmp_path / 'x'),
          devices=ONE, log=quiet)


@pytest.mark.parametrize('num_seeds,group', [(1, None), (3, None), (3, 1), (3, 2), (4, 2)])
def test_over_seeds_equals_a_loop_over_seeds(num_seeds, group):
  # Every layout (unbatched single seed, vmap, lax.map over groups, a group that does not
  # divide N) against a Python loop, with one argument shared by all seeds.
  import jax
  import jax.numpy as jnp
  from runlib.seeds import over_seeds
  rng = np.random.default_rng(num_seeds)
  w_N = jnp.asarray(rng.normal(size=(num_seeds, 3, 2)), jnp.float32)
  x_N = jnp.asarray(rng.normal(size=(num_seeds, 5, 3)), jnp.float32)
  shared = jnp.asarray(rng.normal(size=(2,)), jnp.float32)
  def fn(w, b, x):
    h = jax.lax.scan(lambda c, r: (c + r @ w + b, c.sum()), jnp.zeros(2), x)
    return {'out': h[0], 'trace': h[1]}
  got = jax.jit(lambda w, b, x: over_seeds(fn, (w, b, x), num_seeds, shared=frozenset({1}),
                                           group=group))(w_N, shared, x_N)
  for i in range(num_seeds):
    want = fn(w_N[i], shared, x_N[i])
    np.testing.assert_allclose(got['out'][i], want['out'], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got['trace'][i], want['trace'], rtol=1e-6, atol=1e-6)
  assert got['out'].shape == (num_seeds, 2)
