"""Token recall tasks (data/recall.py): associative recall, MQAR, copy / induction; their
evaluation through analysis/classification_eval.py; a tiny training run."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data.base import TASKS, ConfigError

B = 64


def make(name, **overrides):
  config = dict(TASKS[name].default_config())
  config.update(overrides, name=name)
  return TASKS[name](config)


AR = make('associative_recall', num_keys=16, num_values=16, num_pairs=6)
MQAR = make('mqar', num_keys=24, num_values=20, num_pairs=8, num_queries=6)
COPY = make('induction_copy', num_symbols=8, copy_len=10)
TRACES = []


def _sample(task, split, key):
  TRACES.append(1)   # runs only while tracing
  return task.sample_split(key, B, split)


SAMPLE = jax.jit(_sample, static_argnums=(0, 1))


def batch_of(task, split='in_distribution', seed=0):
  return jax.tree.map(np.asarray, SAMPLE(task, split, jax.random.key(seed)))


def split_pairs(task, tokens):
  p = task.num_pairs
  keys, values = tokens[:, 0:2 * p:2], tokens[:, 1:2 * p:2]
  pos = task.answer_positions()
  return keys, values, tokens[:, pos - 1], tokens[:, pos]


def test_layout_and_token_ranges():
  for task, seq_len, vocab in ((AR, 2 * 6 + 2, 1 + 16 + 16), (MQAR, 2 * (8 + 6), 1 + 24 + 20),
                               (COPY, 21, 10)):
    io = task.io()
    assert (io.input_kind, io.seq_len, io.vocab_size, io.output_dim) == ('tokens', seq_len,
                                                                         vocab, vocab)
    batch = batch_of(task)
    assert batch['tokens_BxT'].shape == (B, seq_len)
    assert batch['tokens_BxT'].min() >= 1 and batch['tokens_BxT'].max() < vocab   # no <pad>
    mask = np.zeros(seq_len)
    mask[task.answer_positions()] = 1
    np.testing.assert_array_equal(batch['loss_mask_BxT'], np.broadcast_to(mask, (B, seq_len)))
  keys, values, queries, answers = split_pairs(MQAR, batch_of(MQAR)['tokens_BxT'])
  for arr in (keys, queries):
    assert arr.min() >= 1 and arr.max() <= 24
  for arr in (values, answers):
    assert arr.min() >= 25 and arr.max() <= 44


@pytest.mark.parametrize('task', [AR, MQAR], ids=['associative_recall', 'mqar'])
def test_queried_value_is_the_one_paired_with_the_key(task):
  batch = batch_of(task, seed=1)
  keys, values, queries, answers = split_pairs(task, batch['tokens_BxT'])
  source = batch['query_source_BxQ']
  for b in range(B):
    assert len(set(keys[b])) == task.num_pairs                  # distinct keys
    assert len(set(queries[b])) == task.num_query               # distinct queries
    for j in range(task.num_query):
      i = list(keys[b]).index(queries[b, j])                    # the key was seen earlier
      assert answers[b, j] == values[b, i] and source[b, j] == i
  # every pair is queried about equally often, values repeat across pairs (uniform draws)
  counts = np.bincount(source.ravel(), minlength=task.num_pairs)
  assert counts.min() > 0.5 * counts.mean()


def test_mqar_queries_cover_the_keys_in_random_order():
  full = make('mqar', num_keys=24, num_values=20, num_pairs=6, num_queries=6)
  keys, _, queries, _ = split_pairs(full, batch_of(full)['tokens_BxT'])
  np.testing.assert_array_equal(np.sort(keys, 1), np.sort(queries, 1))
  assert np.mean(np.all(keys == queries, 1)) < 0.1


@pytest.mark.parametrize('task', [AR, MQAR], ids=['associative_recall', 'mqar'])
def test_in_weights_split_queries_absent_keys(task):
  batch = batch_of(task, 'in_weights')
  keys, _, queries, _ = split_pairs(task, batch['tokens_BxT'])
  assert not np.any(queries[:, :, None] == keys[:, None, :])
  assert np.all(batch['query_source_BxQ'] == -1)
  lookup = np.asarray(task.baseline_scores(batch)['context_lookup'])
  assert lookup.mean() < 0.2
  np.testing.assert_array_equal(task.baseline_scores(batch_of(task))['context_lookup'], 1.0)


def test_copy_second_half_equals_first():
  tokens = batch_of(COPY)['tokens_BxT']
  s = COPY.copy_len
  np.testing.assert_array_equal(tokens[:, s], COPY.separator_id)
  np.testing.assert_array_equal(tokens[:, s + 1:], tokens[:, :s])
  assert np.all(tokens[:, :s] >= 2)
  # uniform symbols: each of the 8 appears ~1/8 of the time
  freq = np.bincount(tokens[:, :s].ravel() - 2, minlength=8) / tokens[:, :s].size
  np.testing.assert_allclose(freq, 1 / 8, atol=0.03)
  fresh = batch_of(COPY, 'in_weights')['tokens_BxT']
  np.testing.assert_array_equal(fresh[:, :s], tokens[:, :s])   # same key, same first half
  assert np.mean(fresh[:, s + 1:] == fresh[:, :s]) < 0.25
  distinct = make('induction_copy', num_symbols=10, copy_len=10, distinct=True)
  first = np.asarray(distinct.sample(jax.random.key(0), 8)['tokens_BxT'])[:, :10]
  assert all(len(set(row)) == 10 for row in first)


def test_deterministic_and_no_recompilation_across_steps():
  traces = []

  def sample(key, step):
    traces.append(1)
    return MQAR.sample(key, 8, step)

  fn = jax.jit(sample)
  a = fn(jax.random.key(5), jnp.int32(0))
  for step in (1, 77, 10**6):
    jax.tree.map(np.testing.assert_array_equal, a, fn(jax.random.key(5), jnp.int32(step)))
  assert not np.array_equal(a['tokens_BxT'], fn(jax.random.key(6), jnp.int32(0))['tokens_BxT'])
  assert len(traces) == 1
  before = len(TRACES)
  batch_of(MQAR, seed=11)
  batch_of(MQAR, seed=12)
  assert len(TRACES) == before    # the split samplers compiled once per (task, split)


def test_position_metrics_and_scores():
  batch = jax.tree.map(jnp.asarray, batch_of(MQAR))
  vocab = MQAR.io().vocab_size
  # a model that puts all its mass on the right answers
  logits = jnp.full((B, MQAR.seq_len, vocab), -10.0)
  pos = MQAR.answer_positions()
  logits = logits.at[jnp.arange(B)[:, None], pos[None] - 1,
                     batch['tokens_BxT'][:, pos]].set(10.0)
  metrics = MQAR.position_metrics(logits, batch)
  assert metrics['loss'].shape == (MQAR.num_query,)
  np.testing.assert_allclose(metrics['accuracy'], 1.0)
  assert float(metrics['loss'].max()) < 1e-6
  # the next_token objective's masked loss is the mean of the per-query losses
  from training.objectives import OBJECTIVES
  loss_fn = OBJECTIVES['next_token'](None, MQAR)
  uniform = jnp.zeros_like(logits)
  value, _ = loss_fn(lambda inputs: uniform, None, batch, None)
  np.testing.assert_allclose(value, np.log(vocab), rtol=1e-5)


@pytest.mark.parametrize('name,key,value,match', [
    ('mqar', 'num_queries', 9, 'at most num_pairs'),
    ('associative_recall', 'num_keys', 8, 'at least num_pairs \\+ num_queries'),
    ('induction_copy', 'distinct', 1, 'True or False'),
    ('induction_copy', 'copy_len', 0, 'integer >= 1'),
])
def test_bad_config(name, key, value, match):
  with pytest.raises(ConfigError, match=match):
    make(name, **{key: value})


def test_config_argument():
  from configs.associative_recall import get_config
  assert get_config('tiny').task.name == 'associative_recall'
  assert get_config('mqar,small').task.name == 'mqar'
  assert get_config('induction_copy').model.num_layers == 3
  with pytest.raises(ConfigError):
    get_config('mqar,tiny,x')


def test_tiny_model_trains_and_evaluates(tmp_path):
  from analysis import classification_eval
  from analysis.base import make_model_fns
  from configs.associative_recall import get_config
  from training.loop import restore_model, train
  config = get_config('mqar,tiny')
  config.task.update(num_keys=16, num_values=16, num_pairs=4, num_queries=4)
  config.model.num_layers, config.model.d_model = 1, 32
  config.train.update(dict(num_steps=10, batch_size=16, steps_per_call=5, log_every=5,
                           checkpoint_every=10, warmup_steps=2, progress=False,
                           keep_log_checkpoints=0))
  config.eval.num_log_evals = 0
  workdir = str(tmp_path / 'run')
  result = train(config, workdir, devices=jax.devices()[:1], log=lambda s: None)
  assert result['step'] == 10 and np.isfinite(result['loss'])
  _, task, model, _ = restore_model(workdir)
  fns = make_model_fns(model, task)
  out = classification_eval.run_suite('in_distribution', fns, task, config, num_prompts=20,
                                      seed=0, batch_size=8)
  json.dumps(out)
  m = out['metrics']
  assert out['num_queries'] == 4 and len(m['model']['by_query']['accuracy']['mean']) == 4
  assert m['context_lookup']['accuracy']['mean'] == 1.0
  assert 0.0 <= m['model']['accuracy']['lo'] <= m['model']['accuracy']['hi'] <= 1.0
  assert np.isfinite(m['model']['loss']['mean'])
  skipped = classification_eval.run_suite('in_context', fns, task, config, num_prompts=20,
                                          seed=0, batch_size=8)
  assert 'skipped' in skipped
  classification_eval.plot(out, str(tmp_path / 'a.png'))
  classification_eval.plot(skipped, str(tmp_path / 'b.png'))
  assert os.path.getsize(tmp_path / 'a.png') > 0
  assert 'context_lookup' in classification_eval.summary(out)
