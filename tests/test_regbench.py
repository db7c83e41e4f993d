"""REGBENCH task: device prompt sampler, config errors, frozen TFDS test set, evaluator."""
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from analysis import language_metrics, regbench_eval
from analysis.base import ModelFns
from baselines import ngram
from data import TASKS, get_task
from data.base import ConfigError
from data import regbench

TINY = dict(vocab_size=6, num_states_min=3, num_states_max=5, alphabet_min=2, alphabet_max=5,
            edges_min=1, edges_max=2, num_train_dfas=30, num_test_dfas=8, strings_min=2,
            strings_max=4, min_string_len=1, max_string_len=6, seq_len=24)


def make_task(**overrides):
  return get_task(ml_collections.ConfigDict(dict(TINY, name='regbench', **overrides)))


@pytest.fixture(scope='module')
def task():
  return make_task()


def sample(task, seed, batch_size):
  batch = jax.jit(task.sample, static_argnums=1)(jax.random.key(seed), batch_size)
  return {k: np.asarray(v) for k, v in batch.items()}


def replay(task, tokens, table):
  """numpy: (strings, state after each token, position in string, string index, truncated)."""
  sep = task.separator_id
  strings, current = [], []
  states, positions, indices = [], [], []
  state = 0
  for token in tokens.tolist():
    if token == task.pad_id:
      states.append(-1), positions.append(-1), indices.append(-1)
      continue
    indices.append(len(strings))
    if token == sep:
      strings.append(current)
      current, state = [], 0
    else:
      current.append(token - 1)
      state = int(table[state, token - 1])
    states.append(state)
    positions.append(len(current))
  return strings, current, np.array(states), np.array(positions), np.array(indices)


def test_registered_and_io(task):
  assert TASKS['regbench'] is regbench.RegBenchTask
  assert task.eval_family == 'regbench' and task.default_objective == 'next_token'
  io = task.io()
  assert io.input_kind == 'tokens' and io.vocab_size == TINY['vocab_size'] + 2
  assert io.output_dim == io.vocab_size and io.seq_len == TINY['seq_len']
  assert set(regbench.RegBenchTask.default_config()) == set(regbench.DEFAULTS)


def test_prompts_are_strings_of_their_language(task):
  batch = sample(task, 0, 64)
  assert batch['tokens_BxT'].shape == (64, TINY['seq_len'])
  for key in ('tokens_BxT', 'state_BxT', 'position_in_string_BxT', 'string_index_BxT',
              'dfa_id_B'):
    assert batch[key].dtype == np.int32
  assert batch['loss_mask_BxT'].dtype == np.float32
  pool = task.pool('train')
  saw_truncated = saw_complete = False
  for i in range(64):
    tokens = batch['tokens_BxT'][i]
    table = pool.table(batch['dfa_id_B'][i])
    strings, tail, states, positions, indices = replay(task, tokens, table)
    for s in strings:
      assert dfa_accepts(table, s)
      assert TINY['min_string_len'] <= len(s) <= TINY['max_string_len']
    assert dfa_accepts(table, tail)
    assert len(strings) <= TINY['strings_max']
    if tokens[-1] == task.pad_id:  # the whole prompt fits: every string ended by a separator
      saw_complete = True
      assert tail == [] and len(strings) >= TINY['strings_min']
    else:
      saw_truncated = True
    np.testing.assert_array_equal(batch['state_BxT'][i], states)
    np.testing.assert_array_equal(batch['position_in_string_BxT'][i], positions)
    np.testing.assert_array_equal(batch['string_index_BxT'][i], indices)
    is_symbol = (tokens >= 1) & (tokens <= TINY['vocab_size'])
    expected_mask = is_symbol & (np.arange(len(tokens)) >= 1)
    np.testing.assert_array_equal(batch['loss_mask_BxT'][i], expected_mask.astype(np.float32))
    # Padding only at the end.
    pads = np.flatnonzero(tokens == task.pad_id)
    if len(pads):
      assert np.all(tokens[pads[0]:] == task.pad_id)
  assert saw_truncated and saw_complete


def dfa_accepts(table, symbols):
  state = 0
  for a in symbols:
    state = int(table[state, a])
    if state < 0:
      return False
  return True


def test_sampler_is_deterministic_and_uniform(task):
  a, b, c = sample(task, 1, 16), sample(task, 1, 16), sample(task, 2, 16)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a['tokens_BxT'], c['tokens_BxT'])
  # A context long enough for every prompt, so complete strings are an unbiased sample.
  task = make_task(seq_len=(TINY['max_string_len'] + 1) * TINY['strings_max'])
  # Edges are chosen uniformly: the first symbol of every string, from the start state of
  # one fixed automaton, over many prompts.
  pool = task.device_pool('train')
  tables = task.pool('train').tables_PxSxV
  target = int(np.argmax((tables[:, 0] >= 0).sum(1)))  # an automaton whose start has 2 edges
  assert (tables[target, 0] >= 0).sum() == 2
  ids = jnp.full((512,), target, jnp.int32)
  batch = jax.jit(task.prompts)(jax.random.key(3), pool, ids)
  tokens = np.asarray(batch['tokens_BxT'])
  starts = np.concatenate([tokens[:, :1], tokens[:, 1:][tokens[:, :-1] == task.separator_id]
                           [:, None]], axis=0)[:, 0]
  starts = starts[(starts >= 1) & (starts <= TINY['vocab_size'])] - 1
  edges = np.flatnonzero(tables[target, 0] >= 0)
  assert set(starts.tolist()) == set(edges.tolist())
  share = np.mean(starts == edges[0])
  assert abs(share - 0.5) < 4 * np.sqrt(0.25 / len(starts))
  # Lengths are uniform on [min, max]: mean of the complete strings.
  lengths = []
  for row in tokens:
    seps = np.flatnonzero(row == task.separator_id)
    lengths.extend(np.diff(np.concatenate([[-1], seps])) - 1)
  mean = (TINY['min_string_len'] + TINY['max_string_len']) / 2
  std = np.sqrt(((TINY['max_string_len'] - TINY['min_string_len'] + 1) ** 2 - 1) / 12)
  assert abs(np.mean(lengths) - mean) < 4 * std / np.sqrt(len(lengths))


def test_predict_separator_puts_separators_in_the_loss():
  task = make_task(predict_separator=True)
  batch = sample(task, 0, 8)
  tokens = batch['tokens_BxT']
  expected = ((tokens >= 1) & (tokens <= task.separator_id)) & (np.arange(tokens.shape[1]) >= 1)
  np.testing.assert_array_equal(batch['loss_mask_BxT'], expected.astype(np.float32))
  assert np.any(tokens[:, 1:] == task.separator_id)


@pytest.mark.parametrize('key,value,needle', [
    ('alphabet_max', 9, 'task.alphabet_max=9'),
    ('num_states_min', 6, 'task.num_states_max=5'),  # min > max: max is named
    ('num_states_min', 2, 'task.num_states_min=2'),  # too few states for 2 distinct targets
    ('alphabet_min', 1, 'task.alphabet_min=1'),
    ('edges_min', 0, 'task.edges_min=0'),
    ('strings_min', 0, 'task.strings_min=0'),
    ('max_string_len', 0, 'task.max_string_len=0'),
    ('seq_len', 1, 'task.seq_len=1'),
    ('vocab_size', 2.5, 'task.vocab_size=2.5'),
    ('predict_separator', 'yes', 'task.predict_separator'),
    ('num_train_dfas', 0, 'task.num_train_dfas=0'),
    ('bogus_key', 1, 'task.bogus_key'),
])
def test_bad_config_raises(key, value, needle):
  with pytest.raises(ConfigError, match=needle.replace('.', r'\.')) as info:
    make_task(**{key: value})
  assert '\n' not in str(info.value)


def test_too_few_languages_is_a_config_error():
  with pytest.raises(ConfigError, match='num_train_dfas'):
    make_task(vocab_size=3, alphabet_min=1, alphabet_max=1, edges_max=1, num_states_min=2,
              num_states_max=2, num_train_dfas=50)


def test_frozen_test_set(tmp_path, task):
  from data import regbench_tfds
  arrays = regbench_tfds.load_test_set(task.cfg, str(tmp_path / 'a'))
  assert 'tensorflow' not in sys.modules
  name = regbench_tfds.config_name(task.cfg)
  assert name == 'v6_s3-5_a2-5_e1-2_n2-4_l1-6_t24_sep0_seed0_test8'
  version_dir = tmp_path / 'a' / 'regbench' / name / regbench_tfds.VERSION
  assert (version_dir / 'dataset_info.json').exists()
  shards = [f for f in os.listdir(version_dir) if '.array_record' in f]
  assert shards
  mtime = os.path.getmtime(version_dir / shards[0])
  again = regbench_tfds.load_test_set(task.cfg, str(tmp_path / 'a'))  # read, not rebuilt
  assert os.path.getmtime(version_dir / shards[0]) == mtime
  other = regbench_tfds.load_test_set(dict(task.cfg, num_train_dfas=3), str(tmp_path / 'b'))
  expected = task.test_prompts()
  pool = task.pool('test')
  for key in arrays:
    np.testing.assert_array_equal(arrays[key], again[key])
    np.testing.assert_array_equal(arrays[key], other[key])
  for key in expected:
    np.testing.assert_array_equal(arrays[key], expected[key])
  np.testing.assert_array_equal(arrays['tables_BxSxV'], pool.tables_PxSxV)
  np.testing.assert_array_equal(arrays['num_states_B'], pool.num_states_P)
  # Readable without this module's builder class, through TFDS alone.
  import tensorflow_datasets as tfds
  source = tfds.builder_from_directory(str(version_dir)).as_data_source()['test']
  assert len(source) == TINY['num_test_dfas']
  # Test automata are not in the training pool.
  train_keys = {t.tobytes() for t in task.pool('train').tables_PxSxV}
  assert not any(t.tobytes() in train_keys for t in arrays['tables_BxSxV'])


def test_build_command(tmp_path, capsys):
  from data import build_regbench
  args = ['--data_dir', str(tmp_path)] + [f'--task.{k}={v}' for k, v in TINY.items()]
  assert build_regbench.main(args) == 0
  assert '8 prompts x 24 tokens' in capsys.readouterr().out
  with pytest.raises(SystemExit) as exit_info:      # a one-line error, not a traceback
    build_regbench.main(args + ['--task.alphabet_max=99'])
  assert exit_info.value.code == 2
  assert 'error: config.task.alphabet_max=99 is invalid' in capsys.readouterr().err


# ---- evaluator, end to end with fake models ---------------------------------------------

def oracle_fns(task, generate_mode=None):
  params = task.language_params()
  tables = {'train': task.pool('train').tables_PxSxV, 'test': task.pool('test').tables_PxSxV}

  def predict(batch):
    probs = language_metrics.automaton_next_token_probs(
        batch['tables_BxSxV'], batch['state_BxT'], batch['position_in_string_BxT'], **params)
    return jnp.log(jnp.maximum(probs, 1e-12))

  def generate(prompt_BxT, prompt_len_B, num_new, key, temperature=1.0, top_k=0):
    # Symbols from the right automaton (oracle) or uniformly random symbols (noise).
    prompt = np.asarray(prompt_BxT)
    out = np.concatenate([prompt, np.zeros((prompt.shape[0], num_new), np.int32)], axis=1)
    rng = np.random.default_rng(0)
    for b in range(prompt.shape[0]):
      start = int(prompt_len_B[b])
      table = dfa_for_prompt[tuple(prompt[b, :start].tolist())]
      state = 0
      for t in range(start, start + num_new):
        if generate_mode == 'noise':
          out[b, t] = rng.integers(1, task.vocab_size + 1)
          continue
        edges = np.flatnonzero(table[state] >= 0)
        if rng.random() < 0.2:
          out[b, t], state = task.separator_id, 0
        else:
          a = rng.choice(edges)
          out[b, t], state = a + 1, table[state, a]
    return jnp.asarray(out)

  dfa_for_prompt = {}
  return ModelFns(predict=predict, generate=generate if generate_mode else None), dfa_for_prompt


def test_evaluator_oracle_and_baselines(tmp_path):
  task = make_task(test_data_dir=str(tmp_path))
  config = ml_collections.ConfigDict(dict(task=dict(task.cfg), eval=dict(num_prefix_strings=1,
                                                                          num_generated_strings=3)))
  fns, lookup = oracle_fns(task, 'oracle')
  from data import regbench_tfds
  test = regbench_tfds.load_test_set(task.cfg, str(tmp_path))
  seps = [np.flatnonzero(row == task.separator_id) for row in test['tokens_BxT']]
  for row, s, table in zip(test['tokens_BxT'], seps, test['tables_BxSxV']):
    lookup[tuple(row[:s[0] + 1].tolist())] = table
  with pytest.raises(ConfigError, match='suite'):
    regbench_eval.run_suite('nope', fns, task, config, num_prompts=4, seed=0, batch_size=3)
  result = regbench_eval.run_suite('test', fns, task, config, num_prompts=100, seed=0,
                                   batch_size=3)
  assert result['num_prompts'] == TINY['num_test_dfas']
  metrics = result['metrics']
  assert metrics['model']['accuracy'] == pytest.approx(1.0)
  assert metrics['model']['tv'] == pytest.approx(0.0, abs=1e-5)
  assert metrics['model']['perplexity'] == pytest.approx(metrics['automaton']['perplexity'],
                                                         rel=1e-5)
  # Baselines against a direct computation on the whole set.
  params = task.language_params()
  arrays = {k: jnp.asarray(v) for k, v in test.items()}
  true = language_metrics.automaton_next_token_probs(
      arrays['tables_BxSxV'], arrays['state_BxT'], arrays['position_in_string_BxT'], **params)
  probs = ngram.ngram_probs(arrays['tokens_BxT'], n=3, vocab_size=task.vocab_size)
  direct = language_metrics.metrics_from_probs(probs, true, arrays['tokens_BxT'],
                                               arrays['loss_mask_BxT'])
  w = np.asarray(direct['weight_BxT1'])
  assert metrics['trigram']['num_targets'] == int(w.sum())
  assert metrics['trigram']['tv'] == pytest.approx(
      float((np.asarray(direct['tv_BxT1']) * w).sum() / w.sum()), rel=1e-5)
  assert metrics['trigram']['accuracy'] < 1.0 or metrics['trigram']['tv'] > 0
  gen = result['generation']
  assert gen['num_complete_strings'] > 0
  assert gen['string_accept_rate'] == 1.0 and gen['token_legal_rate'] == 1.0
  png = tmp_path / 'test.png'
  regbench_eval.plot(result, str(png))
  assert png.stat().st_size > 0
  import json
  json.dumps(result)
  assert 'model' in regbench_eval.summary(result)
  # Random symbols are mostly rejected.
  noise, lookup2 = oracle_fns(task, 'noise')
  lookup2.update(lookup)
  noisy = regbench_eval.run_suite('test', noise, task, config, num_prompts=8, seed=0,
                                  batch_size=3)
  assert noisy['generation']['partial_accept_rate'] < 0.5
  assert noisy['generation']['token_legal_rate'] < 0.9


def test_evaluator_train_suite(task):
  fns, _ = oracle_fns(task)
  config = ml_collections.ConfigDict(dict(task=dict(task.cfg)))
  result = regbench_eval.run_suite('train', fns, task, config, num_prompts=10, seed=0,
                                   batch_size=3)
  assert result['num_prompts'] == 10 and 'generation' not in result
  assert result['metrics']['model']['accuracy'] == pytest.approx(1.0)
  by_string = result['metrics']['model']['by_string']
  assert len(by_string['accuracy']) == TINY['strings_max']
  assert sum(by_string['count']) == result['metrics']['model']['num_targets']


# ---- context length: full prompts at the paper's string settings ------------------------------

def _truncated(task, tokens_BxT):
  """A prompt was cut iff it fills every position without being the longest possible one
  (strings_max strings, each max_string_len symbols and a separator: all that fits)."""
  full_B = tokens_BxT[:, -1] != task.pad_id
  separators_B = np.sum(tokens_BxT == task.separator_id, axis=1)
  complete_B = (tokens_BxT[:, -1] == task.separator_id) & (
      separators_B == int(task.cfg['strings_max'])) & (
      tokens_BxT.shape[1] == regbench.full_prompt_len(task.cfg))
  return full_B & ~complete_B


def _paper_strings_task(**overrides):
  # The paper's string settings (10-19 strings of 1-49 symbols); small pools for speed.
  return make_task(**{**{k: v for k, v in regbench.DEFAULTS.items()
                         if k not in ('test_data_dir',)},
                      'num_train_dfas': 20, 'num_test_dfas': 4, **overrides})


def test_seq_len_zero_is_the_longest_prompt_and_nothing_is_cut():
  cut = _paper_strings_task(seq_len=512)
  full = _paper_strings_task(seq_len=0)
  assert regbench.full_prompt_len(full.cfg) == 19 * 50 == full.seq_len == full.io().seq_len
  cut_share = _truncated(cut, sample(cut, 0, 2048)['tokens_BxT']).mean()
  assert 0.05 < cut_share < 0.12     # ~8.5% of prompts lose their end at 512 tokens
  batch = sample(full, 0, 2048)
  assert not _truncated(full, batch['tokens_BxT']).any()
  # Every prompt ends in a separator followed by padding (or fills the context exactly).
  tokens = batch['tokens_BxT']
  last = np.array([row[row != full.pad_id][-1] for row in tokens])
  np.testing.assert_array_equal(last, full.separator_id)


def test_regbench_variants_hold_full_prompts():
  from configs.regbench import get_config
  for variant in ('tiny', 'small', 'standard'):
    config = get_config(variant)
    config.task.num_train_dfas, config.task.num_test_dfas = 20, 4
    task = get_task(config.task)
    assert task.seq_len >= regbench.full_prompt_len(task.cfg), variant
    assert not _truncated(task, sample(task, 1, 256)['tokens_BxT']).any(), variant
  assert get_config('small').task.seq_len == 0       # derived: 950 at the paper's settings


def test_explicit_and_derived_seq_len_name_the_same_test_set():
  from data import regbench_tfds
  derived = regbench.merge_config(dict(seq_len=0))
  explicit = regbench.merge_config(dict(seq_len=950))
  assert derived == explicit
  assert '_t950_' in regbench_tfds.config_name(derived)


def test_position_metrics_of_the_true_distribution():
  """The automaton's own distribution scores REGBENCH accuracy 1 at every position with a
  target; its loss is the true entropy; padding positions are undefined (NaN)."""
  import jax.numpy as jnp
  from configs.regbench import get_config
  from data import get_task
  from data.languages import automaton_next_token_probs
  config = get_config('tiny')
  config.task.update(dict(num_train_dfas=30, num_test_dfas=10))
  task = get_task(config.task)
  batch = task.sample(jax.random.key(0), 8)
  tables = task.device_pool('train')['tables_PxSxV'][batch['dfa_id_B']].astype(jnp.int32)
  probs = automaton_next_token_probs(tables, batch['state_BxT'],
                                     batch['position_in_string_BxT'],
                                     vocab_size=task.vocab_size, min_string_len=1,
                                     max_string_len=12, predict_separator=True)
  metrics = {k: np.asarray(v) for k, v in task.position_metrics(jnp.log(probs + 1e-12),
                                                                 batch).items()}
  defined = np.isfinite(metrics['accuracy'])
  assert defined.sum() > 10 and not defined[-1]
  assert np.all(metrics['accuracy'][defined] == 1.0)
  assert np.all(metrics['top1'][defined] <= 1.0) and np.nanmean(metrics['top1']) < 1.0
  # uniform logits: the loss is log(num_tokens) wherever defined
  uniform = task.position_metrics(jnp.zeros(probs.shape), batch)['loss']
  np.testing.assert_allclose(np.asarray(uniform)[defined], np.log(task.num_tokens), rtol=1e-5)
