"""The preference objective: log-probabilities, sampling from the current policy, the judge's
wiring, dropped pairs, training that leaves the reference untouched, and bad input."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.preference_regbench import get_config as preference_config
from configs.regbench import get_config as regbench_config
from core import ConfigError
from training.loop import train

ONE = jax.devices()[:1]
quiet = lambda s: None
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


def shrink(config, steps=10):
  config.task.update(dict(num_train_dfas=40, num_test_dfas=10, max_string_len=6, seq_len=64,
                          strings_min=4, strings_max=8))
  config.model.update(dict(num_layers=1, d_model=16))
  config.train.update(dict(num_steps=steps, batch_size=8, steps_per_call=5, checkpoint_every=5,
                           log_every=5, progress=False, keep_log_checkpoints=0))
  config.eval.update(dict(num_log_evals=0))
  return config


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('source') / 'run')
  train(shrink(regbench_config('tiny'), 30), workdir, devices=ONE, log=quiet)
  return workdir


def preference(source, **objective):
  config = shrink(preference_config('tiny'))
  config.train.init_from = source
  config.objective.update({'prefix_strings': 2, 'eval_prompts': 8, **objective})
  return config


def setup_of(config):
  from training.setup import make_setup
  return make_setup(config, ONE)


def test_completion_logps_match_a_direct_sum():
  from training.preference import completion_logps
  config = shrink(regbench_config('tiny'))
  setup = setup_of(config)
  model = setup.model
  tokens = jax.random.randint(jax.random.key(0), (3, 12), 0, setup.task.num_tokens)
  start = jnp.array([2, 5, 7])
  mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], jnp.float32)
  total, count = completion_logps(model, tokens, start, mask)
  log_probs = np.asarray(jax.nn.log_softmax(model(tokens), axis=-1))
  for b in range(3):
    expected = sum(log_probs[b, start[b] + c - 1, tokens[b, start[b] + c]]
                   for c in range(4) if mask[b, c])
    assert float(total[b]) == pytest.approx(expected, rel=1e-5)
  assert list(np.asarray(count)) == [3, 1, 4]


def test_samples_come_from_the_current_parameters(source):
  from flax import nnx
  from training.preference import sample_pair, validate
  config = preference(source)
  setup = setup_of(config)
  task, model = setup.task, setup.model
  cfg = validate(config.objective, task)
  cfg['completion_len'] = task.default_completion_len()
  batch = task.sample(jax.random.key(1), 16)
  prompts = task.preference_prompts(batch, cfg)
  key = jax.random.key(2)
  first = sample_pair(model, task, prompts, key, cfg)[1]
  again = sample_pair(model, task, prompts, key, cfg)[1]
  np.testing.assert_array_equal(first, again)
  graphdef, state = nnx.split(model)
  changed = jax.tree.map(lambda x: x + 0.5 * jax.random.normal(jax.random.key(3), x.shape), state)
  other = sample_pair(nnx.merge(graphdef, changed), task, prompts, key, cfg)[1]
  assert not np.array_equal(first, other)
  # the prompt is kept: the completions start after each row's own prefix
  seqs = sample_pair(model, task, prompts, key, cfg)[0]
  width = prompts['tokens_BxW'].shape[1]
  np.testing.assert_array_equal(np.asarray(seqs[0][:, :width]) * (np.arange(width) <
                                np.asarray(prompts['prompt_len_B'])[:, None]),
                                np.asarray(prompts['tokens_BxW']))


def test_the_automaton_judges_true_strings_and_drops_identical_pairs(source):
  from training.preference import validate
  config = preference(source)
  task = setup_of(config).task
  cfg = validate(config.objective, task)
  cfg['completion_len'] = c = task.default_completion_len()
  batch = task.sample(jax.random.key(4), 32)
  prompts = task.preference_prompts(batch, cfg)
  # the third string of each prompt is a true string of its language: accepted
  tokens = np.asarray(batch['tokens_BxT'])
  index = np.asarray(batch['string_index_BxT'])
  truth = np.zeros((32, c), np.int32)
  for b in range(32):
    string = tokens[b][index[b] == 2]
    truth[b, :len(string)] = string
  mask = jnp.ones((32, c))
  assert np.all(np.asarray(task.judge(prompts, jnp.asarray(truth), mask, cfg)) == 1.0)
  # an undefined transition (some symbol the automaton lacks at the start state) is rejected
  tables = np.asarray(task.device_pool('train')['tables_PxSxV'])[np.asarray(batch['dfa_id_B'])]
  bad = truth.copy()
  for b in range(32):
    missing = np.flatnonzero(tables[b, 0] < 0)
    bad[b, 0] = missing[0] + 1
  assert np.all(np.asarray(task.judge(prompts, jnp.asarray(bad), mask, cfg)) == 0.0)
  rewards = jnp.stack([task.judge(prompts, jnp.asarray(x), mask, cfg) for x in (truth, bad)])
  first_wins, valid = task.preference_labels(jax.random.key(0), rewards,
                                             jnp.stack([truth, bad]), None, cfg)
  assert np.all(np.asarray(first_wins)) and np.all(np.asarray(valid) == 1)
  same = jnp.stack([truth, truth])
  _, valid = task.preference_labels(jax.random.key(0), rewards, same, None, cfg)
  assert np.all(np.asarray(valid) == 0)


@pytest.mark.parametrize('mode', ['on_policy', 'offline'])
def test_training_moves_the_policy_and_never_the_reference(source, tmp_path, mode):
  import json
  from training.init_from import ReferenceStore
  from training.loop import restore_run
  config = preference(source, mode=mode, beta=0.5, judge='length')   # few ties: pairs train
  config.eval.num_log_evals = 2
  workdir = str(tmp_path / mode)
  result = train(config, workdir, devices=ONE, log=quiet)
  before = restore_run(source)['params']
  frozen, _ = ReferenceStore(workdir, setup_of(config).mesh).restore()
  for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(before)):
    np.testing.assert_array_equal(np.asarray(a)[None] if np.asarray(a).ndim < np.asarray(b).ndim
                                  else np.asarray(a), np.asarray(b))
  moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
              for a, b in zip(jax.tree.leaves(result['state']['params']), jax.tree.leaves(before)))
  assert moved > 0
  rows = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  train_rows = [r for r in rows if r.get('kind', 'train') == 'train']
  for name in ('rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins',
               'logps/chosen', 'logps/rejected', 'pairs/valid', 'pairs/dropped'):
    assert name in train_rows[-1]
  evals = [r for r in rows if r.get('kind') == 'eval']
  assert evals[0]['step'] == 0 and evals[0]['eval/kl'] == pytest.approx(0.0, abs=1e-4)
  assert evals[0]['eval/win_rate'] == pytest.approx(0.5, abs=0.5)
  assert 'eval/top1_mean' in evals[-1]   # ICL retention: the task's in-context curve


@pytest.mark.parametrize('key,value,match', [
    ('beta', 0.0, 'objective.beta=0.0 is invalid'),
    ('beta', -1.0, 'objective.beta=-1.0 is invalid'),
    ('loss_type', 'dpo', "known loss types: sigmoid, robust, hinge"),
    ('mode', 'online', 'allowed: on_policy, offline'),
    ('judge', 'vibes', 'allowed: accept, likelihood, length'),
    ('prefix_strings', 9, 'objective.prefix_strings=9'),
])
def test_bad_preference_settings_are_one_line(source, tmp_path, key, value, match):
  config = preference(source, **{key: value})
  with pytest.raises(ConfigError, match=match):
    train(config, str(tmp_path / 'w'), devices=ONE, log=quiet)
  assert not os.path.exists(tmp_path / 'w')


def test_missing_or_incompatible_init_from(source, tmp_path):
  config = preference(source)
  config.train.init_from = ''
  with pytest.raises(ConfigError, match='needs a frozen reference'):
    train(config, str(tmp_path / 'w'), devices=ONE, log=quiet)
  config = preference(source)
  config.task.vocab_size = 12
  config.task.alphabet_max = 12
  with pytest.raises(ConfigError, match='vocab_size \\(22 there, 14 here\\)'):
    train(config, str(tmp_path / 'w'), devices=ONE, log=quiet)
  assert not os.path.exists(tmp_path / 'w')


def test_offline_pairs_are_one_fixed_exportable_dataset(source, tmp_path):
  from flax import nnx
  from training.preference import export_offline_pairs, offline_pairs, validate
  config = preference(source, mode='offline', num_offline_prompts=24)
  workdir = str(tmp_path / 'offline')
  train(config, workdir, devices=ONE, log=quiet, stop_after=5)
  path = export_offline_pairs(workdir, batch_size=16, log=quiet)
  stored = np.load(path)
  assert stored['completions'].shape[:2] == (24, 2)
  setup = setup_of(config)
  cfg = validate(config.objective, setup.task)
  cfg['completion_len'] = setup.task.default_completion_len()
  from training.loop import restore_run
  run = restore_run(source)
  reference = nnx.merge(run['graphdef'], jax.tree.map(lambda x: x[0], run['params']),
                        jax.tree.map(lambda x: x[0], run['rest']))
  index = jnp.array([3, 17, 3])
  _, _, comps, _ = offline_pairs(setup.task, reference, index, cfg)
  for row, i in enumerate([3, 17, 3]):
    np.testing.assert_array_equal(np.asarray(comps[:, row]), stored['completions'][i])
