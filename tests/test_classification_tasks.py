"""Bursty in-context classification (data/classification.py) and its evaluator
(analysis/classification_eval.py): the sampler's defining statistics, the splits, the loss, and
a tiny training run."""
import contextlib
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data import classification
from data.base import TASKS, ConfigError

# One shape everywhere (compiling dominates); statistics use many calls of this shape.
K, L, N, D, BURST, H, B = 32, 8, 8, 6, 4, 8, 500


def make(**overrides):
  config = dict(TASKS['bursty_classification'].default_config())
  config.update(num_classes=K, num_labels=L, num_context=N, n_dims=D, burstiness=BURST,
                num_novel_classes=H, name='bursty_classification')
  config.update(overrides)
  return TASKS['bursty_classification'](config)


BASE = make()
DEFAULT_VALUES = dict(p_bursty=1.0, zipf_alpha=0.0, epsilon=0.1, permute_labels=0.0, pool_seed=0)


@functools.lru_cache(maxsize=None)
def _jitted(split):
  # The per-seed keys are traced arguments (as in a vmapped run): one compile per split.
  return jax.jit(lambda key, values: BASE.bind(values).sample_split(key, B, split))


def many(split='in_distribution', calls=4, seed=0, **values):
  """`calls` batches of B prompts of `split` with the given per-seed values, concatenated."""
  values = {k: jnp.asarray(v, jnp.int32 if k == 'pool_seed' else jnp.float32)
            for k, v in {**DEFAULT_VALUES, **values}.items()}
  outs = [jax.tree.map(np.asarray, _jitted(split)(jax.random.key(seed + i), values))
          for i in range(calls)]
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


CTX = make(p_bursty=0.5, predict_context_labels=True)
CTX_TRACES = []


def _ctx_sample(key, step):
  CTX_TRACES.append(1)   # runs only while tracing
  return CTX.sample(key, 16, step)


ctx_sample = jax.jit(_ctx_sample)


def test_shapes_counts_and_layout():
  task = BASE
  io = task.io()
  assert (io.input_kind, io.input_dim, io.seq_len, io.output_dim) == ('vectors', D + L,
                                                                        2 * N + 1, L)
  batch = many(calls=1, p_bursty=0.5)
  assert batch['items_BxNxD'].shape == (B, N, D) and batch['labels_BxN'].shape == (B, N)
  assert batch['classes_BxN'].min() >= 0 and batch['classes_BxN'].max() < K
  assert batch['labels_BxN'].min() >= 0 and batch['labels_BxN'].max() < L
  # fixed class -> label map k mod L (no permutation by default)
  np.testing.assert_array_equal(batch['labels_BxN'], batch['classes_BxN'] % L)
  np.testing.assert_array_equal(batch['query_label_B'], batch['query_class_B'] % L)
  # every class is used, every label too
  assert len(np.unique(batch['classes_BxN'])) == K and len(np.unique(batch['labels_BxN'])) == L
  feats = np.asarray(task.model_inputs(jax.tree.map(jnp.asarray, batch)))
  assert feats.shape == (B, 2 * N + 1, D + L)
  np.testing.assert_array_equal(feats[:, 0:2 * N:2, :D], batch['items_BxNxD'])
  np.testing.assert_array_equal(feats[:, 0:2 * N:2, D:], 0.0)
  np.testing.assert_array_equal(feats[:, 1:2 * N:2, :D], 0.0)
  np.testing.assert_array_equal(feats[:, 1:2 * N:2, D:],
                                np.eye(L)[batch['labels_BxN']])
  np.testing.assert_array_equal(feats[:, -1, :D], batch['query_item_BxD'])
  np.testing.assert_array_equal(feats[:, -1, D:], 0.0)
  # targets: labels at item positions, the query label last; loss only at the query
  np.testing.assert_array_equal(batch['targets_BxT'][:, -1], batch['query_label_B'])
  np.testing.assert_array_equal(batch['targets_BxT'][:, 0:2 * N:2], batch['labels_BxN'])
  assert batch['target_mask_BxT'].sum(1).tolist() == [1.0] * B


def test_bursty_prompts_hold_exactly_b_copies():
  batch = many(calls=2, p_bursty=1.0)
  assert np.all(batch['bursty_B'] == 1)
  np.testing.assert_array_equal(batch['exemplars_B'], BURST)
  for classes, query in zip(batch['classes_BxN'], batch['query_class_B']):
    values, counts = np.unique(classes, return_counts=True)
    assert len(values) == N // BURST and np.all(counts == BURST)   # Reddy: N/B classes x B
    assert np.sum(classes == query) == BURST
  # the order of the context is shuffled: the query's class is not always first
  first_is_query = batch['classes_BxN'][:, 0] == batch['query_class_B']
  assert 0.3 < first_is_query.mean() < 0.7


def test_fraction_of_bursty_prompts_and_iid_rest():
  batch = many(calls=4, p_bursty=0.3)
  assert abs(batch['bursty_B'].mean() - 0.3) < 0.03
  iid = batch['bursty_B'] == 0
  # i.i.d. prompts: exemplar counts follow Binomial(N, 1/K) (uniform classes)
  assert abs(batch['exemplars_B'][iid].mean() - N / K) < 0.06
  np.testing.assert_array_equal(batch['exemplars_B'][~iid], BURST)


@pytest.mark.parametrize('alpha', [0.0, 1.0])
def test_zipf_exponent_of_class_frequencies(alpha):
  # 20k query classes (the first draw of a bursty prompt and the i.i.d. query are plain draws
  # from the rank-frequency distribution) plus the i.i.d. context classes.
  batch = many(calls=40, seed=1000, zipf_alpha=alpha, p_bursty=0.5)
  assert batch['query_class_B'].size == 20_000
  counts = np.bincount(batch['query_class_B'], minlength=K).astype(np.float64)
  ranks = np.arange(1, K + 1)
  slope = np.polyfit(np.log(ranks), np.log(counts), 1)[0]
  assert abs(-slope - alpha) < 0.08, slope
  np.testing.assert_allclose(counts / counts.sum(), classification.zipf_probs(K, alpha),
                             atol=0.006)
  iid = batch['classes_BxN'][batch['bursty_B'] == 0].ravel()
  slope = np.polyfit(np.log(ranks), np.log(np.bincount(iid, minlength=K)), 1)[0]
  assert abs(-slope - alpha) < 0.08, slope


def test_label_permutation_is_a_bijection_per_prompt():
  batch = many(calls=1, permute_labels=1.0, p_bursty=0.0)
  assert np.all(batch['permuted_B'] == 1)
  identity = 0
  for classes, labels, qc, ql in zip(batch['classes_BxN'], batch['labels_BxN'],
                                     batch['query_class_B'], batch['query_label_B']):
    mapping = {}
    for base, shown in zip(np.append(classes % L, qc % L), np.append(labels, ql)):
      assert mapping.setdefault(base, shown) == shown       # a function of the true label
    assert len(set(mapping.values())) == len(mapping)       # injective: a bijection
    identity += all(k == v for k, v in mapping.items())
  assert identity < 0.05 * B                               # a fresh permutation per prompt
  # partial permutation: the flagged fraction
  assert abs(many(calls=1, permute_labels=0.25)['permuted_B'].mean() - 0.25) < 0.06


def test_in_weights_split_has_no_exemplar_of_the_query_class():
  batch = many('in_weights', calls=2, zipf_alpha=1.0)
  assert np.all(batch['exemplars_B'] == 0)
  assert not np.any(batch['classes_BxN'] == batch['query_class_B'][:, None])
  np.testing.assert_array_equal(batch['query_label_B'], batch['query_class_B'] % L)
  assert np.all(batch['classes_BxN'] < K)
  # query classes keep the training rank-frequency distribution
  counts = np.bincount(batch['query_class_B'], minlength=K)
  assert counts[0] > 3 * counts[K // 2]


def test_in_context_split_uses_only_novel_classes_with_distinct_labels():
  task = BASE
  batch = many('in_context', calls=1)
  assert np.all(batch['classes_BxN'] >= K) and np.all(batch['classes_BxN'] < K + H)
  assert np.all(batch['query_class_B'] >= K) and np.all(batch['query_class_B'] < K + H)
  np.testing.assert_array_equal(batch['exemplars_B'], BURST)
  for classes, labels, qc, ql in zip(batch['classes_BxN'], batch['labels_BxN'],
                                     batch['query_class_B'], batch['query_label_B']):
    pairs = set(zip(classes.tolist(), labels.tolist()))
    assert len(pairs) == N // BURST and len({l for _, l in pairs}) == N // BURST
    assert (qc, ql) in pairs                 # the context tells the query's label
  # labels are random per prompt, not a function of the class
  by_class = {}
  for classes, labels in zip(batch['classes_BxN'], batch['labels_BxN']):
    for c, l in zip(classes, labels):
      by_class.setdefault(c, set()).add(l)
  assert min(len(v) for v in by_class.values()) > 1
  # items are drawn around the novel centres, not the training ones
  novel = np.asarray(task.class_centres(novel=True))
  eps = task.epsilon
  resid = batch['items_BxNxD'] - novel[batch['classes_BxN'] - K] / np.sqrt(1 + eps**2)
  assert np.sqrt(np.mean(np.sum(resid**2, -1))) < 2 * eps


def test_in_context_permuted_split():
  batch = many('in_context_permuted', calls=1)
  assert np.all(batch['classes_BxN'] < K) and np.all(batch['permuted_B'] == 1)
  np.testing.assert_array_equal(batch['exemplars_B'], BURST)
  same = batch['labels_BxN'] == batch['query_label_B'][:, None]
  exemplar = batch['classes_BxN'] == batch['query_class_B'][:, None]
  assert np.all(same[exemplar])
  assert np.mean(batch['query_label_B'] == batch['query_class_B'] % L) < 0.3


def test_item_statistics_follow_reddys_normalisation():
  batch = many(calls=1, epsilon=0.5, p_bursty=0.5)
  centres = np.asarray(BASE.class_centres())
  items = batch['items_BxNxD'].reshape(-1, D)
  classes = batch['classes_BxN'].reshape(-1)
  # E|x|^2 = (|mu_k|^2 + eps^2) / (1 + eps^2) (= 1 on average over centres ~ N(0, I/D))
  expected = np.mean(np.sum(centres[classes]**2, -1) + 0.25) / 1.25
  assert abs(np.mean(np.sum(items**2, -1)) - expected) < 0.03
  assert abs(np.mean(np.sum(np.asarray(make(num_classes=4096).class_centres())**2, -1)) - 1
             ) < 0.02
  resid = items - centres[classes] / np.sqrt(1.25)
  # within-class noise eps * eta / sqrt(1 + eps^2), E|eta|^2 = 1
  assert abs(np.mean(np.sum(resid**2, -1)) - 0.25 / 1.25) < 0.02
  other = many(calls=1, epsilon=0.5, p_bursty=0.5, pool_seed=3)
  np.testing.assert_array_equal(other['classes_BxN'], batch['classes_BxN'])
  assert not np.allclose(other['items_BxNxD'], batch['items_BxNxD'])   # other centres


def test_deterministic_and_no_recompilation_across_steps():
  a = ctx_sample(jax.random.key(3), jnp.int32(0))
  for step in (1, 10, 1000):
    b = ctx_sample(jax.random.key(3), jnp.int32(step))
    jax.tree.map(np.testing.assert_array_equal, a, b)
  c = ctx_sample(jax.random.key(4), jnp.int32(0))
  assert not np.array_equal(a['classes_BxN'], c['classes_BxN'])
  assert len(CTX_TRACES) == 1


def test_bind_refuses_shape_keys():
  with pytest.raises(ConfigError, match='cannot vary across seeds'):
    BASE.bind({'num_classes': 3})


@pytest.mark.parametrize('key,value,match', [
    ('burstiness', 3, 'divisor of num_context'),
    ('p_bursty', 1.5, r'probability in \[0, 1\]'),
    ('num_labels', 1, '>= 2'),
    ('bogus', 1, 'not a key of task bursty_classification'),
])
def test_bad_config(key, value, match):
  with pytest.raises(ConfigError, match=match):
    make(**{key: value})


def test_classification_loss():
  task = CTX
  batch = ctx_sample(jax.random.key(0), jnp.int32(0))
  outputs = jax.random.normal(jax.random.key(1), (16, 2 * N + 1, L))
  value, metrics = classification.classification_loss(outputs, batch)
  log_probs = np.asarray(jax.nn.log_softmax(outputs))
  positions = np.arange(0, 2 * N + 1, 2)
  targets = np.asarray(batch['targets_BxT'])[:, positions]
  manual = -np.take_along_axis(log_probs[:, positions], targets[..., None], -1).mean()
  np.testing.assert_allclose(value, manual, rtol=1e-5)
  query_nll = -log_probs[np.arange(16), -1, np.asarray(batch['query_label_B'])]
  np.testing.assert_allclose(metrics['query_loss'], query_nll.mean(), rtol=1e-5)
  metrics = task.position_metrics(outputs, batch)
  assert metrics['loss'].shape == (N + 1,) and metrics['query_loss'].shape == ()
  np.testing.assert_allclose(metrics['loss'][-1], query_nll.mean(), rtol=1e-5)
  assert metrics['loss_by_exemplars'].shape == (N + 1,)
  assert np.asarray(batch['target_mask_BxT']).sum() == 16 * (N + 1)


@contextlib.contextmanager
def classification_objective():
  """The 'classification_ce' objective, registered for the block if nobody has yet."""
  from training.objectives import OBJECTIVES
  if classification.OBJECTIVE in OBJECTIVES:
    yield
    return
  with OBJECTIVES.temporary(classification.OBJECTIVE, classification.classification_objective,
                            needs_reference=False):
    yield


def test_tiny_model_trains_and_evaluates(tmp_path):
  from analysis import classification_eval
  from analysis.base import make_model_fns
  from configs.bursty_classification import get_config
  from training.loop import restore_model, train
  config = get_config('tiny')
  config.task.update(num_classes=K, num_labels=L, num_context=N, n_dims=D,
                     num_novel_classes=H)
  config.model.num_layers, config.model.d_model = 1, 32
  config.train.update(dict(num_steps=10, batch_size=16, steps_per_call=5, log_every=5,
                           checkpoint_every=10, warmup_steps=2, progress=False,
                           keep_log_checkpoints=0))
  config.eval.num_log_evals = 1
  config.eval.train_prompts = 32
  workdir = str(tmp_path / 'run')
  with classification_objective():
    result = train(config, workdir, devices=jax.devices()[:1], log=lambda s: None)
    assert result['step'] == 10 and np.isfinite(result['loss'])
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      rows = [json.loads(line) for line in f]
    assert any('query_accuracy' in r for r in rows)
    evals = [r for r in rows if r.get('kind') == 'eval']
    assert evals and 'eval/query_loss' in evals[0] and 'eval/icl_score' in evals[0]
    for name in ('in_context_accuracy', 'in_weights_accuracy'):
      assert 0.0 <= evals[0][f'eval/{name}'] <= 1.0
    assert -1.0 <= evals[0]['eval/induction_score'] <= 1.0
    assert 0.0 <= evals[0]['eval/previous_token_score'] <= 1.0
    _, task, model, _ = restore_model(workdir)
    # Attention diagnostics of a classification run score the task's own circuit.
    from analysis.diagnostics import diagnose
    from training.loop import restore_run
    diag = diagnose(restore_run(workdir, log=lambda s: None), str(tmp_path / 'diag'),
                    num_prompts=8, probes=False, log=lambda s: None)
    assert diag['repeated_prompts']['kind'] == 'task targets'
    induction = np.asarray(diag['per_seed'][0]['induction'])
    assert induction.shape == (1, config.model.num_heads) and np.all(np.abs(induction) <= 1)
  fns = make_model_fns(model, task)
  for suite in ('in_context',):   # the splits themselves are tested above
    out = classification_eval.run_suite(suite, fns, task, config, num_prompts=40, seed=0,
                                        batch_size=16)
    json.dumps(out)
    m = out['metrics']
    assert 0.0 <= m['model']['accuracy']['lo'] <= m['model']['accuracy']['hi'] <= 1.0
    assert np.isfinite(m['model']['loss']['mean'])
    assert m['chance']['accuracy']['mean'] == pytest.approx(1 / L)
    assert m['context_nn']['accuracy']['mean'] > 0.9       # epsilon 0.1: nearest is same class
    assert m['class_label']['accuracy']['mean'] < 0.5      # novel classes: weights can't tell
    by_exemplars = m['model']['by_exemplars']['accuracy']
    assert by_exemplars['count'][BURST] == 40 and by_exemplars['mean'][0] is None
    assert len(classification_eval.seed_curves(out)['model accuracy'][1]) == 1
  classification_eval.plot(out, str(tmp_path / 'suite.png'))
  assert os.path.getsize(tmp_path / 'suite.png') > 0
  assert 'in_context' in classification_eval.summary(out)


# ---- attention targets (Reddy's induction circuit) -----------------------------------------

def _causal_uniform(batch_size, seq_len):
  rows = np.tril(np.ones((seq_len, seq_len)))
  return (rows / rows.sum(1, keepdims=True))[None, None, None].repeat(batch_size, 1)


@pytest.mark.parametrize('split', ['in_context', 'in_distribution'])
def test_induction_targets_on_hand_built_attention(split):
  from analysis.diagnostics import attention_target_scores
  batch = jax.tree.map(np.asarray, BASE.sample_split(jax.random.key(3), 64, split))
  targets = BASE.attention_targets(batch)
  T = BASE.seq_len
  queries, weights = targets['induction']
  match = batch['classes_BxN'] == batch['query_class_B'][:, None]
  # A perfect induction head: the query spreads its attention over the labels of its class.
  perfect = np.zeros((1, 64, 1, T, T))
  for b in range(64):
    labels = 2 * np.flatnonzero(match[b]) + 1
    if labels.size:
      perfect[0, b, 0, T - 1, labels] = 1.0 / labels.size
    else:
      perfect[0, b, 0, T - 1, 0] = 1.0
  has = match.any(1)
  expected = has.mean()          # prompts without an exemplar cannot score
  assert float(attention_target_scores(perfect, queries, weights)[0, 0]) == pytest.approx(
      expected, abs=1e-6)
  # Uniform attention, over every position or over the label tokens only, scores 0.
  uniform = _causal_uniform(64, T)
  labels_only = np.zeros((1, 64, 1, T, T))
  labels_only[..., T - 1, 1:2 * N:2] = 1.0 / N
  for maps in (uniform, labels_only):
    assert abs(float(attention_target_scores(maps, queries, weights)[0, 0])) < 1e-6
  # The wrong labels only: negative.
  wrong = np.zeros((1, 64, 1, T, T))
  for b in range(64):
    others = 2 * np.flatnonzero(~match[b]) + 1
    wrong[0, b, 0, T - 1, others if others.size else 0] = 1.0 / max(others.size, 1)
  assert float(attention_target_scores(wrong, queries, weights)[0, 0]) < -0.5
  # Previous-token: each label token on its own item scores 1; uniform gives mean 1/(2i+2).
  queries, weights = targets['previous_token']
  prev = np.zeros((1, 64, 1, T, T))
  prev[..., np.arange(1, 2 * N, 2), np.arange(0, 2 * N, 2)] = 1.0
  assert float(attention_target_scores(prev, queries, weights)[0, 0]) == pytest.approx(1.0)
  assert float(attention_target_scores(uniform, queries, weights)[0, 0]) == pytest.approx(
      np.mean(1.0 / (np.arange(1, 2 * N, 2) + 1)))
