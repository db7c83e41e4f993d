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
  config = preference(source, judge='accept')
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
  from runlib.reference import ReferenceStore
  from training.loop import restore_run
  from training import preference_data
  config = preference(source, mode=mode, beta=0.5, judge='length',   # few ties: pairs train
                      offline_data=str(tmp_path / 'pairs'), num_offline_prompts=40)
  config.eval.num_log_evals = 2
  if mode == 'offline':
    preference_data.build(config, log=quiet)
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
               'logps/chosen', 'logps/rejected', 'pairs/valid', 'pairs/dropped',
               'judge/score', 'completion/length'):
    assert name in train_rows[-1]
  assert ('kl' in train_rows[-1]) == (mode == 'on_policy')   # a policy-sample estimate
  evals = [r for r in rows if r.get('kind') == 'eval']
  assert evals[0]['step'] == 0 and evals[0]['eval/kl'] == pytest.approx(0.0, abs=1e-4)
  assert evals[0]['eval/win_rate'] == pytest.approx(0.5, abs=0.5)
  assert 'eval/top1_mean' in evals[-1]   # ICL retention: the task's in-context curve


@pytest.mark.parametrize('key,value,match', [
    ('beta', 0.0, 'objective.beta=0.0 is invalid'),
    ('beta', -1.0, 'objective.beta=-1.0 is invalid'),
    ('loss_type', 'dpo', "known loss types: sigmoid, robust, hinge"),
    ('mode', 'online', 'allowed: on_policy, offline'),
    ('judge', 'vibes', 'allowed: valid, whole, likelihood, accept, length'),
    ('min_completion_len', 9, 'objective.min_completion_len=9 is invalid'),
    ('completion_len', 3, 'the .valid. judge needs strings of at least 3 symbols'),
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


def test_offline_dataset_build_and_load_round_trip(source, tmp_path):
  """The built TFDS dataset holds exactly what sampling the reference gives, prompt i is the
  task's offline prompt i, a second build reuses it, and a missing one is a one-line error."""
  from flax import nnx
  from training import preference_data
  from training.loop import restore_run
  config = preference(source, mode='offline', offline_data=str(tmp_path / 'pairs'),
                      num_offline_prompts=37)
  setup = setup_of(preference(source))
  cfg = setup.loss.settings
  with pytest.raises(ConfigError, match='holds no dataset|not a directory'):
    setup_of(config)
  preference_data.build(config, log=quiet)
  stored = preference_data.load(setup.task, {**cfg, 'offline_data': str(tmp_path / 'pairs'),
                                             'num_offline_prompts': 37})
  assert stored['completions'].shape == (37, 2, cfg['completion_len'])
  run = restore_run(source)
  reference = nnx.merge(run['graphdef'], jax.tree.map(lambda x: x[0], run['params']),
                        jax.tree.map(lambda x: x[0], run['rest']))
  again = preference_data.sample_dataset(setup, reference, {**cfg, 'num_offline_prompts': 37})
  for key in ('prompt_tokens', 'prompt_len', 'dfa_id', 'completions'):
    np.testing.assert_array_equal(stored[key], again[key])
  np.testing.assert_allclose(stored['rewards'], again['rewards'])
  prompts = setup.task.offline_prompts(jnp.array([0, 36]), cfg)
  np.testing.assert_array_equal(stored['prompt_tokens'][[0, 36]], prompts['tokens_BxW'])
  messages = []
  preference_data.build(config, log=messages.append)
  assert messages[-1].startswith('offline dataset already built')
  offline = setup_of(config)   # loads without error, onto the device
  assert offline.loss.settings['mode'] == 'offline'


def test_sft_loss_is_the_cross_entropy_of_accepted_completions(source):
  """The sft objective's value against a NumPy cross-entropy over the completions the judge
  accepts (here: finished ones), recomputed from the same samples."""
  from training.preference import sample_pair
  config = preference(source, judge='length')
  config.objective.name = 'sft'
  setup = setup_of(config)
  task, model, cfg = setup.task, setup.model, setup.loss.settings
  batch = task.sample(jax.random.key(2), 16)
  key = jax.random.key(5)
  value, metrics = setup.loss(model, model, batch, key)
  prompts = task.preference_prompts(batch, cfg)
  seqs, comps, masks = sample_pair(model, task, prompts, jax.random.split(key)[0], cfg)
  seqs, comps, masks = (np.asarray(x) for x in (seqs, comps, masks))
  log_probs = np.asarray(jax.nn.log_softmax(model(jnp.asarray(seqs.reshape(32, -1))), -1))
  log_probs = log_probs.reshape(2, 16, *log_probs.shape[1:])
  start = np.asarray(prompts['prompt_len_B'])
  separator = task.separator_id
  total, tokens, accepted_count = 0.0, 0, 0
  for i in range(2):
    for b in range(16):
      if separator not in comps[i, b]:
        continue       # unfinished: the 'length' judge rejects it
      accepted_count += 1
      for c in range(int(np.argmax(comps[i, b] == separator)) + 1):
        total -= log_probs[i, b, start[b] + c - 1, seqs[i, b, start[b] + c]]
        tokens += 1
  assert 0 < accepted_count < 32
  assert float(value) == pytest.approx(total / tokens, rel=1e-4)
  assert float(metrics['judge/accepted']) == pytest.approx(accepted_count / 32)
  bad = preference(source, beta=0.3)
  bad.objective.name = 'sft'
  with pytest.raises(ConfigError, match='objective.beta=0.3 is invalid: a preference-loss key'):
    setup_of(bad)


def test_kl_estimate_matches_the_exact_kl_of_a_tiny_policy(source):
  """With two-token completions every completion can be enumerated: the evaluation's sampled
  KL(policy || reference) (mean log ratio over policy samples) agrees with the exact sum
  within four standard errors, and with itself at zero for the reference."""
  from training.preference import completion_logps, sample_pair
  from training.loop import restore_run
  from flax import nnx
  config = preference(source, judge='length', completion_len=2)
  setup = setup_of(config)
  task, cfg = setup.task, setup.loss.settings
  run = restore_run(source)
  reference = nnx.merge(run['graphdef'], jax.tree.map(lambda x: x[0], run['params']),
                        jax.tree.map(lambda x: x[0], run['rest']))
  graphdef, params, rest = nnx.split(reference, nnx.Param, ...)
  policy = nnx.merge(graphdef, jax.tree.map(lambda x: 2.5 * x, params), rest)   # sharper
  one = task.preference_prompts(task.sample(jax.random.key(3), 1), cfg)
  v = task.num_tokens
  # every canonical completion: a separator first (second token ignored), or two tokens
  pairs = [(t1, t2) for t1 in range(v) for t2 in range(v) if t1 != task.separator_id or t2 == 0]
  comps = jnp.array(pairs, jnp.int32)
  n = comps.shape[0]
  prompt = jnp.repeat(one['tokens_BxW'], n, axis=0)
  start = jnp.repeat(one['prompt_len_B'], n)
  from training.preference import place_completions
  rows = {'tokens_BxW': prompt, 'prompt_len_B': start}
  seqs, masks = place_completions(task, rows, jnp.stack([comps, comps]))
  lp_pol, _ = completion_logps(policy, seqs[0], start, masks[0])
  lp_ref, _ = completion_logps(reference, seqs[0], start, masks[0])
  p = np.exp(np.asarray(lp_pol, np.float64))
  assert p.sum() == pytest.approx(1.0, abs=1e-4)       # the enumeration is complete
  exact = float(np.sum(p * (np.asarray(lp_pol) - np.asarray(lp_ref))))
  many = {'tokens_BxW': jnp.repeat(one['tokens_BxW'], 2048, axis=0),
          'prompt_len_B': jnp.repeat(one['prompt_len_B'], 2048),
          'dfa_id_B': jnp.repeat(one['dfa_id_B'], 2048)}
  seqs_s, _, masks_s = sample_pair(policy, task, many, jax.random.key(9), cfg, 1.0)
  ratio = np.asarray(completion_logps(policy, seqs_s[0], many['prompt_len_B'], masks_s[0])[0]
                     - completion_logps(reference, seqs_s[0], many['prompt_len_B'],
                                        masks_s[0])[0])
  stderr = ratio.std() / np.sqrt(ratio.size)
  assert exact > 0.1
  assert abs(ratio.mean() - exact) < 4 * stderr + 1e-3
  metrics = setup.loss.evaluate(reference, reference, task.sample(jax.random.key(1), 8),
                                jax.random.key(0))
  assert float(metrics['kl']) == pytest.approx(0.0, abs=1e-5)


def test_sft_then_dpo_chain_uses_the_sft_model_as_reference(source, tmp_path):
  from runlib.reference import ReferenceStore
  from training.loop import restore_run
  sft_config = preference(source, judge='length')
  sft_config.objective.name = 'sft'
  train(sft_config, str(tmp_path / 'sft'), devices=ONE, log=quiet)
  dpo = preference(source, judge='length')
  dpo.train.init_from = str(tmp_path / 'sft')
  train(dpo, str(tmp_path / 'dpo'), devices=ONE, log=quiet, stop_after=5)
  sft_params = restore_run(str(tmp_path / 'sft'))['params']
  source_params = restore_run(source)['params']
  frozen, _ = ReferenceStore(str(tmp_path / 'dpo'), setup_of(dpo).mesh).restore()
  leaves = lambda t: [np.asarray(x).reshape(-1) for x in jax.tree.leaves(t)]
  for a, b in zip(leaves(frozen), leaves(sft_params)):
    np.testing.assert_array_equal(a, b)
  assert any(np.any(a != b) for a, b in zip(leaves(sft_params), leaves(source_params)))


def test_eval_puts_the_reference_beside_the_fine_tuned_model(source, tmp_path):
  """eval.py's suites on a fine-tuned run carry a `reference` row: the frozen reference's
  metrics on the same prompts, equal to evaluating the source run itself."""
  from analysis.evaluators import get_evaluator
  from analysis.run_eval import evaluate_seed
  from training.loop import restore_run
  config = preference(source, judge='length')
  workdir = str(tmp_path / 'dpo')
  train(config, workdir, devices=ONE, log=quiet)
  evaluator = get_evaluator('regbench')
  tuned = evaluate_seed(restore_run(workdir), 0, evaluator, 'train', num_prompts=16, seed=3)
  original = evaluate_seed(restore_run(source), 0, evaluator, 'train', num_prompts=16, seed=3)
  assert 'reference' not in original['metrics']
  for key in ('accuracy', 'tv', 'nll'):
    assert tuned['metrics']['reference'][key] == pytest.approx(
        original['metrics']['model'][key], rel=1e-5)
  assert tuned['metrics']['model']['nll'] != pytest.approx(original['metrics']['model']['nll'],
                                                           rel=1e-7)
