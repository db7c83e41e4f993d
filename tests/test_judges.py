"""Program judges (data/judges.py) and exact preference problems (data/bandit.py): automaton
judges against brute force, Bradley-Terry labels against their probabilities, dropped pairs,
the bandit's exact reward and KL against Monte Carlo, non-transitivity, Nash-MD."""
import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from data import bandit, get_task, judges
from data.languages import automaton_next_token_probs

V = 3
SEP = V + 1
# Hand-built automata over 3 symbols (-1 = no edge). TABLE has a dead end (state 3: degree 0);
# FULL has an outgoing edge everywhere, as REGBENCH automata do.
TABLE = np.array([[1, 2, -1],
                  [-1, 3, 0],
                  [0, -1, 1],
                  [-1, -1, -1]], np.int32)
FULL = np.array([[1, 2, -1],
                 [-1, -1, 0],
                 [0, -1, 1]], np.int32)


def p_end(length, lo, hi):
  return 0.0 if length < lo else 1.0 / max(hi - length + 1, 1)


def brute_force(table, start, start_pos, tokens, *, predict_separator, lo, hi, bounds):
  """Plain Python: (accepted, log-likelihood) of a completion, read token by token."""
  state, n, logp = start, 0, 0.0
  for t in tokens:
    length = start_pos + n
    if t == SEP:
      if state < 0:
        return False, -math.inf
      in_bounds = lo <= length <= hi
      if predict_separator:
        pe = p_end(length, lo, hi)
        logp += math.log(pe) if pe > 0 else -math.inf
      elif not in_bounds:
        logp = -math.inf
      return (in_bounds if bounds else True), logp
    if 1 <= t <= V and state >= 0 and table[state][t - 1] >= 0:
      degree = sum(1 for x in table[state] if x >= 0)
      pe = p_end(length, lo, hi) if predict_separator else 0.0
      logp += math.log((1 - pe) / degree) if pe < 1 else -math.inf
      state = int(table[state][t - 1])
      n += 1
    else:
      state, logp = -1, -math.inf
  return False, -math.inf                                         # unfinished


def assert_logp_equal(got, want):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
  finite = np.isfinite(want)
  np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-5)


ALL_TOKENS = np.array(list(itertools.product(range(V + 2), repeat=4)), np.int32)  # 625 x 4


@pytest.mark.parametrize('predict_separator', [False, True])
def test_automaton_judges_match_brute_force(predict_separator):
  lo, hi = 1, 3
  kw = dict(min_string_len=lo, max_string_len=hi)
  loglik = jax.jit(lambda s, p, x: judges.automaton_log_likelihood_batch(
      TABLE, s, x, V, start_position_B=p, predict_separator=predict_separator, **kw))
  acc_bounded = jax.jit(lambda s, p, x: judges.accepts_batch(TABLE, s, x, V, start_position_B=p,
                                                             **kw))
  acc_free = jax.jit(lambda s, p, x: judges.accepts_batch(TABLE, s, x, V, start_position_B=p))
  num = ALL_TOKENS.shape[0]
  for start, start_pos in [(0, 0), (1, 0), (2, 1), (3, 2), (0, 3), (-1, 0)]:
    s_B = np.full((num,), start, np.int32)
    p_B = np.full((num,), start_pos, np.int32)
    want = [brute_force(TABLE, start, start_pos, x.tolist(), predict_separator=predict_separator,
                        lo=lo, hi=hi, bounds=True) for x in ALL_TOKENS]
    free = [brute_force(TABLE, start, start_pos, x.tolist(), predict_separator=False, lo=0,
                        hi=10**9, bounds=False)[0] for x in ALL_TOKENS]
    assert_logp_equal(loglik(s_B, p_B, ALL_TOKENS), [w[1] for w in want])
    np.testing.assert_array_equal(acc_bounded(s_B, p_B, ALL_TOKENS), [w[0] for w in want])
    np.testing.assert_array_equal(acc_free(s_B, p_B, ALL_TOKENS), free)
  # Something was accepted and something rejected (the comparison is not vacuous).
  accepted = np.asarray(acc_free(np.zeros(num, np.int32), np.zeros(num, np.int32), ALL_TOKENS))
  assert 0 < accepted.sum() < num


def test_run_automaton_states_and_dead_state():
  run = judges.run_automaton(TABLE, 0, jnp.array([1, 3, 2, SEP, 1, 1]), V)
  # 0 -a-> 1 -c-> 0 -b-> 2, separator (state kept), later tokens ignored.
  np.testing.assert_array_equal(run.states_L, [1, 0, 2, 2, 2, 2])
  np.testing.assert_array_equal(run.in_completion_L, [1, 1, 1, 1, 0, 0])
  assert bool(run.finished) and int(run.final_state) == 2 and int(run.num_symbols) == 3
  dead = judges.run_automaton(TABLE, 0, jnp.array([1, 1, 2, SEP, 0, 0]), V)  # 1 has no 'a'
  np.testing.assert_array_equal(dead.states_L, [1, -1, -1, -1, -1, -1])
  assert int(dead.final_state) == -1
  pad_inside = judges.run_automaton(TABLE, 0, jnp.array([1, 0, SEP]), V)
  assert int(pad_inside.final_state) == -1
  unfinished = judges.run_automaton(TABLE, 0, jnp.array([1, 3, 1]), V)
  assert not bool(unfinished.finished) and int(unfinished.final_state) == 1
  assert not bool(judges.accepts(TABLE, 0, jnp.array([1, 3, 1]), V))
  assert np.isneginf(judges.automaton_log_likelihood(TABLE, 0, jnp.array([1, 3, 1]), V))


def test_generative_model_sums_to_one():
  """With predict_separator, the completions of at most max_len symbols have total probability
  1 from any (state, position) of an automaton without dead ends."""
  lo, hi, length = 1, 3, 4

  def strings(max_symbols):
    out = []
    for n in range(max_symbols + 1):
      for word in itertools.product(range(1, V + 1), repeat=n):
        out.append(list(word) + [SEP] + [0] * (length - n - 1))
    return np.array(out, np.int32)

  for start, start_pos in [(0, 0), (1, 0), (2, 2), (1, 3)]:
    x = strings(hi - start_pos)
    logp = judges.automaton_log_likelihood_batch(
        FULL, np.full(len(x), start, np.int32), x, V, start_position_B=start_pos,
        predict_separator=True, min_string_len=lo, max_string_len=hi)
    assert float(jnp.sum(jnp.exp(logp))) == pytest.approx(1.0, abs=1e-5)


def test_matches_language_next_token_probs_on_regbench_prompts():
  """On real REGBENCH prompts, a completion from any prompt position has the log-likelihood
  the true next-token distribution (data/languages.py) gives it, and every string's rest is
  accepted."""
  task = get_task(ml_collections.ConfigDict(dict(
      name='regbench', vocab_size=6, num_states_min=3, num_states_max=5, alphabet_min=2,
      alphabet_max=5, edges_min=1, edges_max=2, num_train_dfas=20, num_test_dfas=4,
      strings_min=2, strings_max=4, min_string_len=1, max_string_len=6, seq_len=0,
      predict_separator=True)))
  batch = task.sample(jax.random.key(0), 32)
  pool = task.device_pool('train')
  params = task.language_params()
  vocab, length = task.vocab_size, params['max_string_len'] + 1
  probs_BxTxK = automaton_next_token_probs(
      pool['tables_PxSxV'][batch['dfa_id_B']].astype(jnp.int32), batch['state_BxT'],
      batch['position_in_string_BxT'], vocab_size=vocab,
      min_string_len=params['min_string_len'], max_string_len=params['max_string_len'],
      predict_separator=True)
  tokens = np.asarray(batch['tokens_BxT'])
  num_t = tokens.shape[1]
  rng = np.random.default_rng(0)
  checked = 0
  for trial in range(4):
    index_B = rng.integers(0, num_t - length, size=tokens.shape[0]).astype(np.int32)
    tables, state_B, pos_B = judges.completion_context(batch, pool['tables_PxSxV'],
                                                       jnp.asarray(index_B))
    comp_BxL = np.stack([tokens[b, i + 1:i + 1 + length] for b, i in enumerate(index_B)])
    logp = judges.automaton_log_likelihood_batch(
        tables, state_B, comp_BxL, vocab, start_position_B=pos_B, predict_separator=True,
        min_string_len=params['min_string_len'], max_string_len=params['max_string_len'])
    acc = judges.accepts_batch(tables, state_B, comp_BxL, vocab, start_position_B=pos_B,
                               min_string_len=params['min_string_len'],
                               max_string_len=params['max_string_len'])
    for b, i in enumerate(index_B):
      if comp_BxL[b, 0] == 0:                    # after the prompt's last string
        continue
      want = 0.0
      for j in range(length):
        token = comp_BxL[b, j]
        want += math.log(float(probs_BxTxK[b, i + j, token]))
        if token == vocab + 1:
          break
      assert bool(acc[b])
      assert float(logp[b]) == pytest.approx(want, abs=1e-4)
      checked += 1
  assert checked > 60


def test_length_reward():
  x = jnp.array([[1, 2, SEP, 1], [SEP, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, SEP]])
  np.testing.assert_array_equal(judges.length_reward(x, SEP), [2, 0, -5, 3])
  np.testing.assert_array_equal(judges.length_reward(x, SEP, kind='negative_length'),
                                [-2, 0, -5, -3])
  np.testing.assert_array_equal(judges.length_reward(x, SEP, kind='target', target=2,
                                                     unfinished_reward=-9.0), [0, -2, -9, -1])


@pytest.mark.parametrize('temperature', [0.5, 2.0])
def test_bradley_terry_label_frequencies(temperature):
  diffs = jnp.array([-2.0, -0.5, 0.0, 0.3, 1.5])
  reps = 20000
  r_a = jnp.tile(diffs, reps)
  r_b = jnp.zeros_like(r_a)
  prefer_a, tie = jax.jit(judges.bradley_terry_labels)(jax.random.key(1), r_a, r_b,
                                                        temperature)
  assert not bool(jnp.any(tie))
  freq = np.asarray(prefer_a).reshape(reps, -1).mean(0)
  prob = 1 / (1 + np.exp(-np.asarray(diffs) / temperature))
  tolerance = 4.5 * np.sqrt(prob * (1 - prob) / reps)
  assert np.all(np.abs(freq - prob) < tolerance), (freq, prob)


def test_bradley_terry_temperature_zero_marks_ties():
  r_a = jnp.array([1.0, 0.0, 2.0, -jnp.inf, jnp.inf])
  r_b = jnp.array([0.0, 1.0, 2.0, -jnp.inf, 3.0])
  prefer_a, tie = judges.bradley_terry_labels(jax.random.key(0), r_a, r_b, 0.0)
  np.testing.assert_array_equal(prefer_a, [1, 0, 0, 0, 1])
  np.testing.assert_array_equal(tie, [0, 0, 1, 1, 0])
  # A traced temperature: one compiled function for both regimes.
  labels = jax.jit(judges.bradley_terry_labels)
  assert not bool(jnp.any(labels(jax.random.key(0), r_a, r_b, 1.0)[1]))
  np.testing.assert_array_equal(labels(jax.random.key(0), r_a, r_b, 0.0)[1], tie)


def test_identical_completions_and_ties_are_dropped():
  a = jnp.array([[1, 2, SEP, 3], [1, 2, SEP, 3], [1, SEP, 0, 0], [2, 2, 2, 2]])
  b = jnp.array([[1, 2, SEP, 1], [1, 3, SEP, 3], [2, SEP, 0, 0], [2, 2, 2, 2]])
  # Row 0: identical up to the separator; rows 1 and 2: different completions of the same
  # length (a tie under the length reward); row 3: identical unfinished completions.
  r_a, r_b = judges.length_reward(a, SEP), judges.length_reward(b, SEP)
  for temperature in (0.0, 1.0):
    pair = judges.preference_pair(jax.random.key(0), a, b, r_a, r_b, separator_id=SEP,
                                  temperature=temperature)
    np.testing.assert_array_equal(pair.identical_B, [1, 0, 0, 1])
    want_valid = [0, 0, 0, 0] if temperature == 0 else [0, 1, 1, 0]
    np.testing.assert_array_equal(pair.valid_B, want_valid)
    stats = judges.pair_stats(pair)
    assert float(stats['kept']) == sum(want_valid)
    assert float(stats['dropped_identical']) == 2
    assert float(stats['dropped_tie']) == (2 if temperature == 0 else 0)
  # A strict preference at temperature 0 is kept and oriented.
  c = jnp.array([[1, 1, 1, SEP]])
  d = jnp.array([[1, SEP, 0, 0]])
  pair = judges.preference_pair(jax.random.key(0), d, c, judges.length_reward(d, SEP),
                                judges.length_reward(c, SEP), separator_id=SEP)
  assert float(pair.valid_B[0]) == 1 and int(pair.chosen_index_B[0]) == 1
  np.testing.assert_array_equal(pair.chosen_BxL, c)
  np.testing.assert_array_equal(pair.rejected_BxL, d)


def test_pair_from_judge():
  rng = np.random.default_rng(0)
  batch, num, length = 64, 4, 5
  tokens = rng.integers(1, SEP + 1, size=(batch, num, length)).astype(np.int32)
  tokens[:8, 1] = tokens[:8, 0]                         # duplicates
  tokens = jnp.asarray(tokens)
  rewards = judges.length_reward(tokens, SEP)
  fn = jax.jit(judges.pair_from_judge, static_argnames=('separator_id', 'strategy'))
  best = fn(jax.random.key(0), tokens, rewards, separator_id=SEP, strategy='best_worst')
  rows = jnp.arange(batch)
  chosen_r, rejected_r = rewards[rows, best.chosen_index_B], rewards[rows, best.rejected_index_B]
  valid = np.asarray(best.valid_B) > 0
  np.testing.assert_array_equal(chosen_r, rewards.max(-1))
  assert np.all(np.asarray(chosen_r > rejected_r)[valid])
  np.testing.assert_array_equal(best.chosen_BxL, tokens[rows, best.chosen_index_B])
  rand = fn(jax.random.key(1), tokens, rewards, separator_id=SEP, temperature=1.0)
  assert np.all(np.asarray(rand.chosen_index_B != rand.rejected_index_B))
  identical = judges.identical_completions(tokens[rows, rand.chosen_index_B],
                                           tokens[rows, rand.rejected_index_B], SEP)
  np.testing.assert_array_equal(np.asarray(rand.valid_B) > 0, ~np.asarray(identical))


def test_classification_and_regression_judges():
  prefer_a, valid = judges.classification_pair(jax.random.key(0), jnp.array([1, 0, 2, 1]),
                                               jnp.array([0, 1, 2, 2]), jnp.array([1, 1, 0, 0]))
  np.testing.assert_array_equal(valid, [1, 1, 0, 0])      # both wrong / identical dropped
  np.testing.assert_array_equal(prefer_a[:2], [1, 0])
  target = jnp.array([0.0, 0.0, 1.0, 1.0])
  prefer_a, valid = judges.regression_pair(jax.random.key(0), jnp.array([0.1, -2.0, 3.0, 1.5]),
                                           jnp.array([0.5, 1.0, -1.0, 1.5]), target)
  np.testing.assert_array_equal(prefer_a[:2], [1, 0])
  np.testing.assert_array_equal(valid, [1, 1, 0, 0])       # equal distance; identical
  mean, std, y = jnp.full((50000,), 0.3), jnp.full((50000,), 0.7), jnp.zeros((50000,))
  samples = judges.gaussian_readout_sample(jax.random.key(2), mean, std)
  mc = float(jnp.mean(judges.regression_reward(samples, y)))
  exact = float(judges.gaussian_expected_reward(mean, std, y)[0])
  assert mc == pytest.approx(exact, abs=0.02)


# ---- the didactic bandit ---------------------------------------------------------------------

def test_reference_policy_matches_the_authors_sampler():
  probs = np.asarray(bandit.reference_probs())
  assert probs.shape == (100,) and probs.sum() == pytest.approx(1.0, abs=1e-6)
  assert int(np.argmax(probs[1:-1])) + 1 == 16 and abs(probs[15] / probs[16] - 1) < 0.01
  # The authors' construction: histogram of tanh(Cauchy(-0.7, 0.4)) samples on [-1, 1].
  n = 400_000
  x = np.tanh(-0.7 + 0.4 * np.random.default_rng(0).standard_cauchy(n))
  hist = np.histogram(x, range=(-1.0, 1.0), bins=100)[0] / n
  assert np.all(np.abs(hist - probs) < 5 * np.sqrt(probs * (1 - probs) / n) + 1e-6)
  reward_far, reward_near = bandit.reward_table(70.0), bandit.reward_table(20.0)
  assert int(jnp.argmax(reward_far)) == 70 and int(jnp.argmax(reward_near)) == 20
  # The far reward is where the reference has little mass; the near one where it has much.
  ref = bandit.reference_logits()
  assert float(bandit.expected_reward(ref, reward_far)) < 0.5 * float(
      bandit.expected_reward(ref, reward_near))


def test_bandit_exact_reward_and_kl_match_monte_carlo():
  ref = bandit.reference_logits(num_tokens=bandit.NUM_TOKENS)
  logits = ref + 1.5 * jax.random.normal(jax.random.key(0), ref.shape)
  table = bandit.reward_table(bandit.FAR_CENTER)
  n = 40_000
  tokens = bandit.sample(jax.random.key(1), logits, n)
  assert tokens.shape == (n, bandit.NUM_TOKENS)
  rewards = np.asarray(bandit.sequence_reward(tokens, table))
  log_ratio = np.asarray(bandit.log_prob(tokens, logits) - bandit.log_prob(tokens, ref))
  for exact, mc in ((bandit.expected_reward(logits, table), rewards),
                    (bandit.kl_divergence(logits, ref), log_ratio)):
    assert abs(float(exact) - mc.mean()) < 5 * mc.std() / np.sqrt(n)
  # A [V] policy is the same categorical at every position.
  one = jax.nn.log_softmax(logits[0])
  tokens1 = bandit.sample(jax.random.key(2), one, n)
  kl_mc = np.asarray(bandit.log_prob(tokens1, one) - bandit.log_prob(tokens1, ref[0]))
  kl_exact = float(bandit.kl_divergence(one, ref[0]))
  assert kl_exact == pytest.approx(bandit.NUM_TOKENS * float(bandit.kl_divergence(
      one, ref[0], num_tokens=1)), rel=1e-5)
  assert abs(kl_exact - kl_mc.mean()) < 5 * kl_mc.std() / np.sqrt(n)
  # Bradley-Terry preference from the reward.
  p = bandit.preference_prob(tokens[:4], tokens[4:8], table, 0.1)
  want = jax.nn.sigmoid((bandit.sequence_reward(tokens[:4], table)
                         - bandit.sequence_reward(tokens[4:8], table)) / 0.1)
  np.testing.assert_allclose(p, want, rtol=1e-6)


def test_optimal_regularised_policy():
  ref = bandit.reference_logits(num_tokens=bandit.NUM_TOKENS)
  table = bandit.reward_table(bandit.FAR_CENTER)
  beta = 0.05

  def objective(lg):
    return bandit.expected_reward(lg, table) - beta * bandit.kl_divergence(lg, ref)

  best = bandit.optimal_policy_logits(ref, table, beta)
  value = float(objective(best))
  for seed in range(5):
    noise = 0.3 * jax.random.normal(jax.random.key(seed), best.shape)
    assert float(objective(best + noise)) < value
  # Closed form of the optimum: beta log E_ref[exp(r / beta)].
  log_z = jax.scipy.special.logsumexp(ref[0] + table / (bandit.NUM_TOKENS * beta))
  assert value == pytest.approx(float(bandit.NUM_TOKENS * beta * log_z), rel=1e-4)


# ---- non-transitive preferences (NLHF) -------------------------------------------------------

def test_cyclic_preference_has_no_bradley_terry_reward():
  for p in (0.6, 0.8, 0.95):
    pref = judges.cyclic_preference_matrix(p)
    np.testing.assert_allclose(pref + pref.T, 1.0, atol=1e-6)
    residual, _ = bandit.bt_fit_residual(pref)
    assert float(residual) >= 2 * (p - 0.5) ** 2 - 1e-4 > 0.01
  # Control: a preference that IS Bradley-Terry is fitted to ~0, with its reward recovered.
  r = jnp.array([1.0, 0.0, -2.0])
  pref = jax.nn.sigmoid(r[:, None] - r[None, :])
  residual, _ = bandit.bt_fit_residual(pref)
  assert float(residual) < 1e-6
  np.testing.assert_allclose(bandit.bt_fit(pref), r - r.mean(), atol=1e-3)


def test_completion_preference_is_rock_paper_scissors():
  x = jnp.array([[SEP, 0, 0], [1, SEP, 0], [1, 2, SEP], [1, 1, 1]])   # 0, 1, 2 symbols
  x = x.at[3].set(jnp.array([3, 3, 3]))                              # unfinished: 3 symbols
  classes = judges.completion_class(x, SEP)
  np.testing.assert_array_equal(classes, [0, 1, 2, 0])
  p = lambda a, b: float(judges.preference_prob(x[a], x[b], separator_id=SEP, p=0.8))
  assert p(0, 1) == pytest.approx(0.8) and p(1, 2) == pytest.approx(0.8)
  assert p(2, 0) == pytest.approx(0.8) and p(1, 0) == pytest.approx(0.2)
  assert p(0, 3) == pytest.approx(0.5)


def test_nash_equilibrium_3():
  pref = judges.cyclic_preference_matrix(0.8)
  np.testing.assert_allclose(bandit.nash_equilibrium_3(pref), np.full(3, 1 / 3), atol=1e-6)
  a = jnp.array([[0.0, 0.3, -0.1], [-0.3, 0.0, 0.2], [0.1, -0.2, 0.0]])   # asymmetric cycle
  nash = bandit.nash_equilibrium_3(a + 0.5)
  np.testing.assert_allclose((a + 0.5) @ nash, 0.5, atol=1e-6)     # every class wins 1/2
  assert np.all(np.asarray(nash) > 0)
  condorcet = jnp.array([[0.0, 0.3, 0.1], [-0.3, 0.0, 0.2], [-0.1, -0.2, 0.0]]) + 0.5
  np.testing.assert_allclose(bandit.nash_equilibrium_3(condorcet), [1, 0, 0])


def test_nash_md_converges_while_bradley_terry_does_not():
  pref = judges.cyclic_preference_matrix(0.8)
  nash = np.asarray(bandit.nash_equilibrium_3(pref))
  start = jnp.log(jnp.array([0.8, 0.15, 0.05]))
  mu = jnp.zeros(3)                                      # uniform reference
  steps = 600

  def exploitability(probs):
    return float(jnp.max(pref @ probs)) - 0.5

  _, traj = bandit.nash_md(start, mu, pref, 0.1, 0.1, steps)
  dist = np.abs(np.asarray(traj) - nash).sum(-1)
  assert dist[0] > 0.5 and dist[-1] < 0.05
  assert exploitability(traj[-1]) < 0.01
  # Ascending a Bradley-Terry reward fitted on on-policy pairs collapses onto one class.
  _, bt_traj = bandit.bt_reward_dynamics(start, pref, 0.5, steps)
  bt_dist = np.abs(np.asarray(bt_traj) - nash).sum(-1)
  assert bt_dist[-100:].min() > 0.5
  assert exploitability(bt_traj[-1]) > 0.25
  # Without the regularisation (tau = 0: multiplicative weights self-play) the last iterate
  # does not settle either.
  _, free = bandit.nash_md(start, mu, pref, 0.1, 0.0, steps)
  assert np.abs(np.asarray(free) - nash).sum(-1)[-100:].min() > 0.2


def _graded_by_hand(table, tokens, m, hi):
  """Plain Python: walk the automaton from state 0; 1 for a finished string of m..hi symbols
  with every edge defined, else min(valid prefix symbols, m) / (m + 1)."""
  state, prefix, broken = 0, 0, False
  for t in tokens:
    if t == SEP:
      whole = not broken and m <= prefix <= hi
      return 1.0 if whole else min(prefix, m) / (m + 1)
    if broken or not 1 <= t <= V or table[state, t - 1] < 0:
      broken = True
      continue
    state = table[state, t - 1]
    prefix += 1
  return min(prefix, m) / (m + 1)    # unfinished


@pytest.mark.parametrize('table', [TABLE, FULL])
def test_default_judge_ranks_degenerate_completions_lowest(table):
  """Every completion of up to 5 tokens (symbols, separator, one <pad>): the graded validity
  judge equals a hand walk; its best score 1 is reached only by whole valid strings of at
  least m symbols; the empty string scores the least of all, and a one-symbol string less
  than any completion with a longer valid prefix. The prefix-accepting judge, by contrast,
  gives the one-symbol string its best score."""
  m, hi, length = 3, 4, 5
  alphabet = list(range(0, SEP + 1))
  comps = np.array(list(itertools.product(alphabet, repeat=length)), np.int32)
  got = np.asarray(judges.graded_validity_batch(jnp.asarray(table), 0, jnp.asarray(comps), V,
                                                min_string_len=m, max_string_len=hi))
  want = np.array([_graded_by_hand(table, c, m, hi) for c in comps])
  np.testing.assert_allclose(got, want, atol=1e-6)
  prefix = np.asarray(jax.vmap(lambda c: judges.valid_prefix_symbols(table, 0, c, V))(
      jnp.asarray(comps)))
  accepted = np.asarray(judges.accepts_batch(jnp.asarray(table), 0, jnp.asarray(comps), V,
                                             min_string_len=m, max_string_len=hi))
  assert np.any(accepted)
  np.testing.assert_array_equal(got == 1.0, accepted)
  symbols = np.asarray(judges.num_symbols(jnp.asarray(comps), SEP))
  assert np.all(symbols[got == 1.0] >= m)
  empty = comps[:, 0] == SEP
  assert got[empty].max() == got.min() == 0.0
  one = (symbols == 1) & (comps[:, 1] == SEP) & (prefix == 1)
  assert np.any(one)
  assert got[one].max() < got[prefix >= 2].min()
  loose = np.asarray(judges.accepts_batch(jnp.asarray(table), 0, jnp.asarray(comps), V,
                                          min_string_len=1, max_string_len=hi))
  assert np.all(loose[one])           # the 'accept' judge is won by one symbol
