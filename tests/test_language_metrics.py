"""REGBENCH metrics against brute-force computations on tiny automata."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import language_metrics as lm
from data import dfa

V = 4
SEP = V + 1
K = V + 2
# 0 -a-> 1, 0 -b-> 2, 1 -c-> 0, 2 -a-> 0, 2 -d-> 1  (symbols a..d = 0..3)
TABLE = np.full((3, V), -1, np.int32)
TABLE[0, 0], TABLE[0, 1], TABLE[1, 2], TABLE[2, 0], TABLE[2, 3] = 1, 2, 0, 0, 1


def string_distribution(table, min_len, max_len):
  """Brute force: probability of every string (length uniform, then uniform edges)."""
  probs = {}
  for length in range(min_len, max_len + 1):
    frontier = [((), 0, 1.0 / (max_len - min_len + 1))]
    for _ in range(length):
      nxt = []
      for word, state, p in frontier:
        edges = np.flatnonzero(table[state] >= 0)
        for a in edges:
          nxt.append((word + (int(a),), int(table[state, a]), p / len(edges)))
      frontier = nxt
    for word, _, p in frontier:
      probs[word] = probs.get(word, 0.0) + p
  return probs


def brute_next_token(probs, prefix, predict_separator):
  """P(next token | current string so far = prefix) by summing over whole strings."""
  out = np.zeros(K)
  total = sum(p for w, p in probs.items() if w[:len(prefix)] == prefix)
  for w, p in probs.items():
    if w[:len(prefix)] != prefix:
      continue
    if len(w) == len(prefix):
      out[SEP] += p / total
    else:
      out[w[len(prefix)] + 1] += p / total
  if not predict_separator:
    out[SEP] = 0.0
    out /= out.sum()
  return out


def walk(table, strings):
  """Tokens, state and position after every token for strings joined by separators."""
  tokens, states, positions = [], [], []
  for s in strings:
    state = 0
    for i, a in enumerate(s):
      state = int(table[state, a])
      tokens.append(a + 1), states.append(state), positions.append(i + 1)
    tokens.append(SEP), states.append(0), positions.append(0)
  return np.array(tokens), np.array(states), np.array(positions)


@pytest.mark.parametrize('predict_separator', [False, True])
@pytest.mark.parametrize('min_len,max_len', [(1, 4), (0, 3), (2, 2)])
def test_true_distribution_matches_brute_force(predict_separator, min_len, max_len):
  probs = string_distribution(TABLE, min_len, max_len)
  rng = np.random.default_rng(0)
  words = list(probs)
  strings = [words[i] for i in rng.choice(len(words), size=6, p=np.array(list(probs.values())))]
  tokens, states, positions = walk(TABLE, strings)
  got = np.asarray(lm.automaton_next_token_probs(
      jnp.asarray(TABLE)[None], jnp.asarray(states)[None], jnp.asarray(positions)[None],
      vocab_size=V, min_string_len=min_len, max_string_len=max_len,
      predict_separator=predict_separator))[0]
  prefix = ()
  checked = 0
  for t, token in enumerate(tokens):
    prefix = () if token == SEP else prefix + (int(token) - 1,)
    if not predict_separator and len(prefix) == max_len:
      continue  # the string must end: no symbol distribution to compare
    np.testing.assert_allclose(got[t], brute_next_token(probs, prefix, predict_separator),
                               atol=1e-6)
    checked += 1
  assert checked > 5
  # Padding positions put all mass on <pad>.
  pad = np.asarray(lm.automaton_next_token_probs(
      jnp.asarray(TABLE)[None], jnp.full((1, 2), -1), jnp.full((1, 2), -1), vocab_size=V,
      min_string_len=min_len, max_string_len=max_len, predict_separator=predict_separator))
  np.testing.assert_allclose(pad[0, :, 0], 1.0)


def random_batch(seed, batch=3, length=14):
  spec = dfa.DFASpec(vocab_size=V, num_states_min=3, num_states_max=4, alphabet_min=2,
                     alphabet_max=4, edges_min=1, edges_max=2)
  _, pool = dfa.sample_pools(spec, seed, num_train=1, num_test=batch)
  rng = np.random.default_rng(seed)
  tokens = np.zeros((batch, length), np.int32)
  states = np.full((batch, length), -1, np.int32)
  positions = np.full((batch, length), -1, np.int32)
  index = np.full((batch, length), -1, np.int32)
  for b in range(batch):
    table = pool.table(b)
    state, pos, string = 0, 0, 0
    real = rng.integers(length // 2, length + 1)
    for t in range(real):
      edges = np.flatnonzero(table[state] >= 0)
      if pos >= 1 and rng.random() < 0.3:
        tokens[b, t], state, pos = SEP, 0, 0
        index[b, t] = string
        string += 1
      else:
        a = rng.choice(edges)
        tokens[b, t], state, pos = a + 1, table[state, a], pos + 1
        index[b, t] = string
      states[b, t], positions[b, t] = state, pos
  mask = ((tokens >= 1) & (tokens <= V)).astype(np.float32)
  mask[:, 0] = 0
  return pool.tables_PxSxV, tokens, states, positions, index, mask


def test_metrics_match_loops():
  tables, tokens, states, positions, index, mask = random_batch(1)
  true = np.asarray(lm.automaton_next_token_probs(
      jnp.asarray(tables), jnp.asarray(states), jnp.asarray(positions), vocab_size=V,
      min_string_len=1, max_string_len=5, predict_separator=False))
  logits = np.random.default_rng(2).normal(size=tokens.shape + (K,)).astype(np.float32) * 3
  got = jax.device_get(lm.metrics_from_logits(jnp.asarray(logits), jnp.asarray(true),
                                              jnp.asarray(tokens), jnp.asarray(mask)))
  batch, length = tokens.shape
  for b in range(batch):
    for t in range(length - 1):
      p = np.exp(logits[b, t] - logits[b, t].max())
      p /= p.sum()
      greedy = int(np.argmax(logits[b, t]))
      legal = states[b, t] >= 0 and 1 <= greedy <= V and tables[b, states[b, t], greedy - 1] >= 0
      assert got['accuracy_BxT1'][b, t] == float(legal)
      np.testing.assert_allclose(got['tv_BxT1'][b, t], 0.5 * np.abs(p - true[b, t]).sum(),
                                 atol=1e-5)
      np.testing.assert_allclose(got['nll_BxT1'][b, t], -np.log(p[tokens[b, t + 1]]),
                                 rtol=1e-4)
      assert got['weight_BxT1'][b, t] == mask[b, t + 1]
  # The true distribution itself: every greedy token legal, tv 0, nll = -log p_true(target).
  exact = jax.device_get(lm.metrics_from_probs(jnp.asarray(true), jnp.asarray(true),
                                               jnp.asarray(tokens), jnp.asarray(mask)))
  w = exact['weight_BxT1'] > 0
  assert np.all(exact['accuracy_BxT1'][w] == 1) and np.allclose(exact['tv_BxT1'][w], 0)
  targets = tokens[:, 1:]
  with np.errstate(divide='ignore'):  # masked targets (separators, padding) have p = 0
    expected_nll = -np.log(np.take_along_axis(true[:, :-1], targets[..., None], -1)[..., 0])
  np.testing.assert_allclose(exact['nll_BxT1'][w], expected_nll[w], rtol=1e-5)
  # Zeros are floored in the nll (the authors' log(p + 1e-5)).
  wrong = np.roll(true, 1, axis=-1)
  floored = jax.device_get(lm.metrics_from_probs(jnp.asarray(wrong), jnp.asarray(true),
                                                 jnp.asarray(tokens), jnp.asarray(mask)))
  assert np.all(np.isfinite(floored['nll_BxT1']))
  assert floored['nll_BxT1'].max() <= -np.log(1e-5) + 1e-4


def test_accumulator_groups_by_string_index():
  tables, tokens, states, positions, index, mask = random_batch(3, batch=4, length=20)
  rng = np.random.default_rng(4)
  metrics = {name: rng.random((4, 19)) for name in ('accuracy_BxT1', 'tv_BxT1', 'nll_BxT1')}
  metrics['weight_BxT1'] = mask[:, 1:]
  row_weight = np.array([1.0, 1.0, 0.0, 1.0])
  acc = lm.Accumulator(num_strings=12)
  acc.add(metrics, index, row_weight)
  result = acc.result()
  groups = {}
  for b in range(4):
    for t in range(19):
      if row_weight[b] and mask[b, t + 1] and index[b, t + 1] >= 0:
        groups.setdefault(index[b, t + 1], []).append((b, t))
  all_targets = [bt for g in groups.values() for bt in g]
  assert result['num_targets'] == len(all_targets)
  for name in ('accuracy', 'tv', 'nll'):
    values = metrics[f'{name}_BxT1']
    np.testing.assert_allclose(result[name], np.mean([values[b, t] for b, t in all_targets]))
    for s in range(12):
      got = result['by_string'][name][s]
      if s in groups:
        np.testing.assert_allclose(got, np.mean([values[b, t] for b, t in groups[s]]))
      else:
        assert got is None
  np.testing.assert_allclose(result['perplexity'], np.exp(result['nll']))
