"""Random automata of REGBENCH: ranges, minimality, trimming, canonical form, disjoint pools."""

import numpy as np
import pytest

from data import dfa

SPEC = dfa.DFASpec(vocab_size=6, num_states_min=3, num_states_max=5, alphabet_min=2,
                   alphabet_max=4, edges_min=1, edges_max=2)


def readable(table, start, max_len):
  """Brute force: every string of length <= max_len readable from `start` (all accept)."""
  out = {()}
  frontier = {((), start)}
  for _ in range(max_len):
    nxt = set()
    for word, state in frontier:
      for a in range(table.shape[1]):
        t = int(table[state, a])
        if t >= 0:
          nxt.add((word + (a,), t))
    out |= {w for w, _ in nxt}
    frontier = nxt
  return out


def test_raw_sampler_respects_ranges():
  rng = np.random.default_rng(0)
  raw = dfa.sample_raw_dfas(rng, SPEC, 300)
  assert raw.shape == (300, SPEC.num_states_max, SPEC.vocab_size)
  sizes = set()
  for table in raw:
    degree = (table >= 0).sum(1)
    num_states = int((degree > 0).sum())
    sizes.add(num_states)
    assert SPEC.num_states_min <= num_states <= SPEC.num_states_max
    assert np.all(degree[num_states:] == 0)  # padding rows after the real states
    real = degree[:num_states]
    assert np.all((real >= SPEC.edges_min) & (real <= SPEC.edges_max))
    used = np.flatnonzero((table >= 0).any(0))
    assert len(used) <= SPEC.alphabet_max
    for s in range(num_states):
      targets = table[s][table[s] >= 0]
      assert s not in targets                          # no self loops (as the authors)
      assert len(set(targets.tolist())) == len(targets)  # distinct targets
      assert np.all(targets < num_states)
  assert sizes == set(range(SPEC.num_states_min, SPEC.num_states_max + 1))


def test_minimize_keeps_language_and_is_minimal_and_trimmed():
  rng = np.random.default_rng(1)
  raw = dfa.sample_raw_dfas(rng, SPEC, 60)
  shrunk = 0
  for table in raw:
    canon = dfa.minimize(table)
    n = canon.shape[0]
    shrunk += n < int(((table >= 0).sum(1) > 0).sum())
    # Same language (strings up to length 7).
    assert readable(table, 0, 7) == readable(canon, 0, 7)
    # Trimmed: every state reachable from the start; every state has an outgoing edge.
    reach = {0}
    stack = [0]
    while stack:
      for t in canon[stack.pop()]:
        if t >= 0 and t not in reach:
          reach.add(int(t))
          stack.append(int(t))
    assert reach == set(range(n))
    assert np.all((canon >= 0).sum(1) >= 1)
    # Minimal: no two states accept the same strings (length <= n separates any two
    # inequivalent states of an n-state automaton plus the sink).
    futures = [frozenset(readable(canon, s, n)) for s in range(n)]
    assert len(set(futures)) == n
  assert shrunk > 0  # the sample did contain reducible automata


def test_canonical_form_ignores_state_names():
  rng = np.random.default_rng(2)
  raw = dfa.sample_raw_dfas(rng, SPEC, 40)
  for table in raw:
    num_states = int(((table >= 0).sum(1) > 0).sum())
    perm = np.concatenate([[0], 1 + rng.permutation(num_states - 1)])  # keep the start
    renamed = np.full_like(table, -1)
    for s in range(num_states):
      for a in range(table.shape[1]):
        if table[s, a] >= 0:
          renamed[perm[s], a] = perm[table[s, a]]
    np.testing.assert_array_equal(dfa.minimize(table), dfa.minimize(renamed))


def test_pools_are_disjoint_distinct_and_deterministic():
  train, test = dfa.sample_pools(SPEC, seed=3, num_train=80, num_test=20)
  assert len(train) == 80 and len(test) == 20
  keys_train = {dfa.canonical_key(train.table(i)) for i in range(len(train))}
  keys_test = {dfa.canonical_key(test.table(i)) for i in range(len(test))}
  assert len(keys_train) == 80 and len(keys_test) == 20
  assert not keys_train & keys_test
  # Distinct keys are distinct languages (brute force over short strings).
  languages = [frozenset(readable(p.table(i), 0, 2 * SPEC.num_states_max))
               for p in (train, test) for i in range(len(p))]
  assert len(set(languages)) == 100
  train2, test2 = dfa.sample_pools(SPEC, seed=3, num_train=80, num_test=20)
  np.testing.assert_array_equal(train.tables_PxSxV, train2.tables_PxSxV)
  np.testing.assert_array_equal(test.tables_PxSxV, test2.tables_PxSxV)
  # The test pool does not depend on the train pool's size; train pools nest.
  train3, test3 = dfa.sample_pools(SPEC, seed=3, num_train=10, num_test=20)
  np.testing.assert_array_equal(test.tables_PxSxV, test3.tables_PxSxV)
  np.testing.assert_array_equal(train.tables_PxSxV[:10], train3.tables_PxSxV)
  _, test4 = dfa.sample_pools(SPEC, seed=4, num_train=10, num_test=20)
  assert not np.array_equal(test.tables_PxSxV, test4.tables_PxSxV)


def test_pool_arrays_are_consistent():
  train, _ = dfa.sample_pools(SPEC, seed=5, num_train=50, num_test=5)
  for i in range(len(train)):
    n = int(train.num_states_P[i])
    assert 1 <= n <= SPEC.num_states_max
    assert np.all(train.tables_PxSxV[i, n:] == -1)
    for s in range(SPEC.num_states_max):
      symbols = np.flatnonzero(train.tables_PxSxV[i, s] >= 0)
      assert train.degrees_PxS[i, s] == len(symbols)
      np.testing.assert_array_equal(train.edges_PxSxE[i, s, :len(symbols)], symbols)
      assert np.all(train.edges_PxSxE[i, s, len(symbols):] == -1)
      if s < n:
        assert SPEC.edges_min <= len(symbols) <= SPEC.edges_max  # minimisation keeps degrees
    assert dfa.accepts(train.table(i), []) and not dfa.accepts(
        train.table(i), [int(np.flatnonzero(train.tables_PxSxV[i, 0] < 0)[0])])


def test_too_few_languages_is_reported():
  tiny = dfa.DFASpec(vocab_size=2, num_states_min=2, num_states_max=2, alphabet_min=1,
                     alphabet_max=1, edges_min=1, edges_max=1)
  with pytest.raises(ValueError, match='distinct automata'):
    dfa.sample_pools(tiny, seed=0, num_train=5, num_test=5, max_candidates=3000)
