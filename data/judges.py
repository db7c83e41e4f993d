"""Program judges for preference fine-tuning: exact rewards, labels and pairs.

When the judge of a completion is a program, its reward, a policy's win rate and its KL to a
reference are exact, so preference fine-tuning (DPO and relatives) can be studied without a
learned reward model. Everything here is pure and jittable: shapes are static and variable
lengths are masks.

REGBENCH completions (token layout of data/regbench.py: 0 = <pad>, 1..V = symbols, V + 1 = the
separator). A completion is generated after a prompt position whose automaton state (and the
number of symbols of the current string read so far) the batch gives (`state_BxT`,
`position_in_string_BxT`; `completion_context`). The completion is the tokens up to and
including the FIRST separator; later tokens are ignored. A completion without a separator in
its L tokens is *unfinished*.

What "accepted" means. REGBENCH automata (data/dfa.py) make every state accepting and a missing
edge rejects, so a language is prefix closed: a string is in it iff every transition is
defined. A completion is therefore accepted iff
  * every token before the separator is a symbol whose transition is defined (a <pad> or an
    out-of-range id inside a completion, or an undefined transition, kills it: state -1),
  * it is finished (ends with a separator), and
  * optionally (when `min_string_len` / `max_string_len` are given) the whole string, i.e. the
    symbols already read in the prompt (`start_position`) plus the completion's symbols, has a
    length in [min_string_len, max_string_len]: the generator draws lengths uniformly from that
    range, so a string outside it has probability 0 under the generative model although it is
    in the language. Without the bounds only language membership is judged.

The generative model (`automaton_log_likelihood`) is that of data/languages.py: after l symbols
of a string in state q, the separator has probability p_end(l) = `end_probability(l)` (0 below
min_len, 1/(max_len - l + 1) from there, 1 at max_len), and each of q's deg(q) outgoing symbols
(1 - p_end(l)) / deg(q). With predict_separator=False (the authors' setting: the string length
is drawn independently of the automaton and is not a target) the separator carries no
probability: the log-likelihood is sum of -log deg(q) over the symbols, and -inf if the length
is outside the bounds (when given). A rejected or unfinished completion has log-likelihood -inf.

Pairs. `bradley_terry_labels` turns two rewards into a preference (sampled, or deterministic at
temperature 0 with ties marked); `preference_pair` / `pair_from_judge` return chosen/rejected
plus `valid_B`, 0 for identical completions and for ties: such pairs are dropped and counted
(`pair_stats`), never trained on silently.

Also: a classification judge (correct beats incorrect), a regression judge with a Gaussian
read-out (the sample nearer the truth wins), and a non-transitive rock-paper-scissors judge
for Nash learning from human feedback (`preference_prob`; the game dynamics are in
data/bandit.py).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from data.languages import end_probability

PAD_ID = 0
SYMBOL_OFFSET = 1
DEAD = -1


# ---------------------------------------------------------------------------------------------
# Completion masks (any leading shape; L = last axis)
# ---------------------------------------------------------------------------------------------

def completion_mask(tokens_L: jax.Array, separator_id: int) -> jax.Array:
  """bool[..., L]: the tokens of the completion (up to and including the first separator)."""
  is_sep = tokens_L == separator_id
  seps_before = jnp.cumsum(is_sep, axis=-1) - is_sep
  return seps_before == 0


def is_finished(tokens_L: jax.Array, separator_id: int) -> jax.Array:
  """bool[...]: whether the completion has a separator within its L tokens."""
  return jnp.any(tokens_L == separator_id, axis=-1)


def num_symbols(tokens_L: jax.Array, separator_id: int) -> jax.Array:
  """int32[...]: symbols (ids 1 .. separator_id - 1) before the first separator."""
  is_symbol = (tokens_L >= SYMBOL_OFFSET) & (tokens_L < separator_id)
  return jnp.sum(is_symbol & completion_mask(tokens_L, separator_id), axis=-1).astype(jnp.int32)


def canonical_completion(tokens_L: jax.Array, separator_id: int) -> jax.Array:
  """The tokens with everything after the first separator replaced by <pad>."""
  return jnp.where(completion_mask(tokens_L, separator_id), tokens_L, PAD_ID)


def identical_completions(tokens_a_L: jax.Array, tokens_b_L: jax.Array,
                          separator_id: int) -> jax.Array:
  """bool[...]: the two completions are the same (tokens after the separator ignored)."""
  return jnp.all(canonical_completion(tokens_a_L, separator_id)
                 == canonical_completion(tokens_b_L, separator_id), axis=-1)


# ---------------------------------------------------------------------------------------------
# Running an automaton over a completion
# ---------------------------------------------------------------------------------------------

class CompletionRun(NamedTuple):
  """One completion read by an automaton (shapes for one completion; batched adds B).

  states_L:          int32 state after each token; -1 (dead) from an undefined transition or a
                     non-symbol before the separator on; after the completion the state it
                     ended in is repeated.
  in_completion_L:   bool, the tokens up to and including the first separator.
  token_log_probs_L: float32 log-probability of each completion token under the generative
                     model (module docstring); 0 outside the completion.
  final_state:       int32 the state when the separator was read (after all L tokens if
                     unfinished); -1 if dead.
  num_symbols:       int32 symbols of the completion (before the separator).
  finished:          bool, a separator within the L tokens.
  """
  states_L: jax.Array
  in_completion_L: jax.Array
  token_log_probs_L: jax.Array
  final_state: jax.Array
  num_symbols: jax.Array
  finished: jax.Array


def _bounds(min_string_len: Optional[int], max_string_len: Optional[int]):
  lo = 0 if min_string_len is None else int(min_string_len)
  hi = 2**30 if max_string_len is None else int(max_string_len)
  return lo, hi


def run_automaton(table_SxV: jax.Array, start_state, tokens_L: jax.Array, vocab_size: int, *,
                  start_position=0, predict_separator: bool = False,
                  min_string_len: Optional[int] = None,
                  max_string_len: Optional[int] = None) -> CompletionRun:
  """Reads one completion from `start_state` (module docstring); jittable.

  Args:
    table_SxV: next state per (state, symbol), -1 = no edge (data/dfa.py), any int dtype.
    start_state: the state before the completion (0 for a new string; -1 = dead).
    tokens_L: int completion tokens (REGBENCH ids).
    vocab_size: V (the separator is V + 1).
    start_position: symbols of the current string already read before the completion.
    predict_separator, min_string_len, max_string_len: the generative model's separator
      (only `token_log_probs_L` depends on them). predict_separator=True needs both bounds.
  """
  if predict_separator and (min_string_len is None or max_string_len is None):
    raise ValueError('predict_separator=True needs min_string_len and max_string_len')
  table_SxV = jnp.asarray(table_SxV).astype(jnp.int32)
  tokens_L = jnp.asarray(tokens_L).astype(jnp.int32)
  num_states = table_SxV.shape[0]
  separator = vocab_size + 1
  lo, hi = _bounds(min_string_len, max_string_len)
  degrees_S = jnp.sum(table_SxV >= 0, axis=-1)

  def body(carry, token):
    state, done, count = carry
    active = ~done
    is_sep = token == separator
    is_sym = (token >= SYMBOL_OFFSET) & (token <= vocab_size)
    safe_state = jnp.clip(state, 0, num_states - 1)
    symbol = jnp.clip(token - SYMBOL_OFFSET, 0, vocab_size - 1)
    target = jnp.where(state >= 0, table_SxV[safe_state, symbol], DEAD)
    position = start_position + count          # symbols of the string read before this token
    degree = jnp.maximum(degrees_S[safe_state], 1).astype(jnp.float32)
    if predict_separator:
      p_end = end_probability(position, lo, hi)
      log_sep = jnp.log(p_end)
      log_sym = jnp.log1p(-p_end) - jnp.log(degree)
    else:
      log_sep = jnp.where((position >= lo) & (position <= hi), 0.0, -jnp.inf)
      log_sym = -jnp.log(degree)
    alive = state >= 0
    log_p = jnp.where(is_sep, log_sep,
                      jnp.where(is_sym & (target >= 0), log_sym, -jnp.inf))
    log_p = jnp.where(alive, log_p, -jnp.inf)
    new_state = jnp.where(is_sep, state, jnp.where(is_sym, target, DEAD))
    new_state = jnp.where(active, new_state, state)
    new_count = count + (active & is_sym).astype(jnp.int32)
    new_done = done | is_sep
    out = (new_state, active, jnp.where(active, log_p, 0.0).astype(jnp.float32))
    return (new_state, new_done, new_count), out

  init = (jnp.asarray(start_state, jnp.int32), jnp.asarray(False), jnp.asarray(0, jnp.int32))
  (final_state, finished, count), (states_L, in_L, logp_L) = jax.lax.scan(body, init, tokens_L)
  return CompletionRun(states_L, in_L, logp_L, final_state, count, finished)


def _batched(fn, tables, start_state_B, tokens_BxL, start_position_B, **kwargs):
  """vmaps `fn` over B; `tables` may be one table [S, V] or one per row [B, S, V]."""
  batch = tokens_BxL.shape[0]
  start_state_B = jnp.broadcast_to(jnp.asarray(start_state_B, jnp.int32), (batch,))
  start_position_B = jnp.broadcast_to(jnp.asarray(start_position_B, jnp.int32), (batch,))
  table_axis = 0 if jnp.ndim(tables) == 3 else None
  return jax.vmap(lambda t, s, x, p: fn(t, s, x, start_position=p, **kwargs),
                  in_axes=(table_axis, 0, 0, 0))(tables, start_state_B, tokens_BxL,
                                                 start_position_B)


def run_automaton_batch(tables, start_state_B, tokens_BxL, vocab_size: int, *,
                        start_position_B=0, **kwargs) -> CompletionRun:
  """`run_automaton` over B completions (tables [S, V] shared or [B, S, V])."""
  return _batched(lambda t, s, x, **kw: run_automaton(t, s, x, vocab_size, **kw),
                  tables, start_state_B, tokens_BxL, start_position_B, **kwargs)


def accepts(table_SxV, start_state, tokens_L, vocab_size: int, *, start_position=0,
            min_string_len: Optional[int] = None,
            max_string_len: Optional[int] = None) -> jax.Array:
  """bool: finished, every transition defined, and (if bounds are given) the string length
  start_position + symbols in [min_string_len, max_string_len] (module docstring)."""
  run = run_automaton(table_SxV, start_state, tokens_L, vocab_size,
                      start_position=start_position)
  lo, hi = _bounds(min_string_len, max_string_len)
  length = start_position + run.num_symbols
  return run.finished & (run.final_state >= 0) & (length >= lo) & (length <= hi)


def accepts_batch(tables, start_state_B, tokens_BxL, vocab_size: int, *, start_position_B=0,
                  **kwargs) -> jax.Array:
  """`accepts` over B completions: bool[B]."""
  return _batched(lambda t, s, x, **kw: accepts(t, s, x, vocab_size, **kw),
                  tables, start_state_B, tokens_BxL, start_position_B, **kwargs)


def valid_prefix_symbols(table_SxV, start_state, tokens_L, vocab_size: int) -> jax.Array:
  """int32: symbols of the completion (before its first separator) read before the first
  undefined transition or non-symbol token, i.e. the length of its longest prefix in the
  language."""
  run = run_automaton(table_SxV, start_state, tokens_L, vocab_size)
  tokens_L = jnp.asarray(tokens_L)
  is_sym = (tokens_L >= SYMBOL_OFFSET) & (tokens_L <= vocab_size)
  alive = run.states_L >= 0
  return jnp.sum(run.in_completion_L & is_sym & alive).astype(jnp.int32)


def graded_validity(table_SxV, start_state, tokens_L, vocab_size: int, *,
                    min_string_len: int, max_string_len: int) -> jax.Array:
  """float32 in [0, 1]: 1 for a finished string of the language with min_string_len ..
  max_string_len symbols; otherwise min(p, m) / (m + 1) with p its valid prefix's symbols and
  m = min_string_len. Only whole strings of at least m symbols reach 1; a shorter or broken
  one scores by how far it got, so the empty string scores 0 and one symbol 1 / (m + 1)."""
  whole = accepts(table_SxV, start_state, tokens_L, vocab_size,
                  min_string_len=min_string_len, max_string_len=max_string_len)
  prefix = valid_prefix_symbols(table_SxV, start_state, tokens_L, vocab_size)
  partial = jnp.minimum(prefix, min_string_len).astype(jnp.float32) / (min_string_len + 1.0)
  return jnp.where(whole, 1.0, partial).astype(jnp.float32)


def graded_validity_batch(tables, start_state_B, tokens_BxL, vocab_size: int, **kwargs):
  """`graded_validity` over B completions: float32[B]."""
  return _batched(lambda t, s, x, start_position, **kw: graded_validity(t, s, x, vocab_size,
                                                                          **kw),
                  tables, start_state_B, tokens_BxL, 0, **kwargs)


def automaton_log_likelihood(table_SxV, start_state, tokens_L, vocab_size: int, *,
                             start_position=0, predict_separator: bool = False,
                             min_string_len: Optional[int] = None,
                             max_string_len: Optional[int] = None) -> jax.Array:
  """float32: log-probability of the completion under the automaton's generative model
  (uniform over outgoing edges; the separator as in data/languages.py); -inf if rejected or
  unfinished."""
  run = run_automaton(table_SxV, start_state, tokens_L, vocab_size,
                      start_position=start_position, predict_separator=predict_separator,
                      min_string_len=min_string_len, max_string_len=max_string_len)
  total = jnp.sum(run.token_log_probs_L)
  return jnp.where(run.finished & (run.final_state >= 0), total, -jnp.inf)


def automaton_log_likelihood_batch(tables, start_state_B, tokens_BxL, vocab_size: int, *,
                                   start_position_B=0, **kwargs) -> jax.Array:
  """`automaton_log_likelihood` over B completions: float32[B]."""
  return _batched(lambda t, s, x, **kw: automaton_log_likelihood(t, s, x, vocab_size, **kw),
                  tables, start_state_B, tokens_BxL, start_position_B, **kwargs)


def completion_context(batch, tables_PxSxV, index_B):
  """What a judge needs for completions generated after prompt position `index_B` of a
  REGBENCH batch: (tables_BxSxV, start_state_B, start_position_B). `tables_PxSxV` is the pool
  the batch was drawn from (task.device_pool(split)['tables_PxSxV']). After a separator the
  state is the start state 0 and the position 0 (a new string)."""
  rows = jnp.arange(index_B.shape[0])
  tables = jnp.asarray(tables_PxSxV)[batch['dfa_id_B']].astype(jnp.int32)
  return (tables, batch['state_BxT'][rows, index_B],
          batch['position_in_string_BxT'][rows, index_B])


# ---------------------------------------------------------------------------------------------
# Rewards
# ---------------------------------------------------------------------------------------------

def length_reward(tokens_L: jax.Array, separator_id: int, *, kind: str = 'length',
                  target: float = 0.0, unfinished_reward: Optional[float] = None) -> jax.Array:
  """float32[...]: a reward from the completion's length n (symbols before the separator).

  kind: 'length' (n), 'negative_length' (-n) or 'target' (-|n - target|).
  unfinished_reward: the reward of a completion without a separator; default -(L + 1), below
    every finished completion's reward for every kind (|n|, |n - target| <= L when target <= L).
  """
  n = num_symbols(tokens_L, separator_id).astype(jnp.float32)
  if kind == 'length':
    reward = n
  elif kind == 'negative_length':
    reward = -n
  elif kind == 'target':
    reward = -jnp.abs(n - target)
  else:
    raise ValueError(f'length_reward kind {kind!r}: length, negative_length or target')
  if unfinished_reward is None:
    unfinished_reward = -(tokens_L.shape[-1] + 1.0)
  return jnp.where(is_finished(tokens_L, separator_id), reward, unfinished_reward)


def acceptance_reward(accepted: jax.Array) -> jax.Array:
  """float32: 1 for an accepted completion, 0 otherwise."""
  return jnp.asarray(accepted, jnp.float32)


# ---------------------------------------------------------------------------------------------
# Bradley-Terry labels and pairs
# ---------------------------------------------------------------------------------------------

def _reward_difference(reward_a, reward_b):
  """r_a - r_b with equal rewards (also equal infinities) giving exactly 0, never nan."""
  reward_a = jnp.asarray(reward_a, jnp.float32)
  reward_b = jnp.asarray(reward_b, jnp.float32)
  return jnp.where(reward_a == reward_b, 0.0, reward_a - reward_b)


def bradley_terry_prob(reward_a_B, reward_b_B, temperature) -> jax.Array:
  """P(a preferred to b) = sigmoid((r_a - r_b) / temperature); at temperature 0 the step
  function (1/2 on ties)."""
  diff = _reward_difference(reward_a_B, reward_b_B)
  temperature = jnp.asarray(temperature, jnp.float32)
  soft = jax.nn.sigmoid(diff / jnp.where(temperature > 0, temperature, 1.0))
  hard = jnp.where(diff > 0, 1.0, jnp.where(diff < 0, 0.0, 0.5))
  return jnp.where(temperature > 0, soft, hard)


def bradley_terry_labels(key: jax.Array, reward_a_B, reward_b_B, temperature):
  """(prefer_a_B, tie_B), bool[B]. temperature > 0: prefer_a ~ Bernoulli(sigmoid((r_a - r_b) /
  temperature)), never a tie. temperature == 0: prefer_a = r_a > r_b, tie = (r_a == r_b).
  `temperature` may be traced."""
  diff = _reward_difference(reward_a_B, reward_b_B)
  prob = bradley_terry_prob(reward_a_B, reward_b_B, temperature)
  u = jax.random.uniform(key, jnp.shape(diff))
  temperature = jnp.asarray(temperature, jnp.float32)
  stochastic = temperature > 0
  prefer_a = jnp.where(stochastic, u < prob, diff > 0)
  tie = ~stochastic & (diff == 0)
  return prefer_a, tie


class PreferencePair(NamedTuple):
  """A judged pair per row. chosen/rejected_index_B index the candidates (0 = a, 1 = b for
  `preference_pair`; 0 .. K-1 for `pair_from_judge`); valid_B = 0 where the pair must be
  dropped (identical completions or a tie)."""
  chosen_index_B: jax.Array
  rejected_index_B: jax.Array
  chosen_BxL: jax.Array
  rejected_BxL: jax.Array
  valid_B: jax.Array
  identical_B: jax.Array
  tie_B: jax.Array


def preference_pair(key, tokens_a_BxL, tokens_b_BxL, reward_a_B, reward_b_B, *,
                    separator_id: int, temperature=0.0) -> PreferencePair:
  """Labels completions a and b by Bradley-Terry on their rewards (`bradley_terry_labels`)."""
  prefer_a, tie = bradley_terry_labels(key, reward_a_B, reward_b_B, temperature)
  identical = identical_completions(tokens_a_BxL, tokens_b_BxL, separator_id)
  chosen = jnp.where(prefer_a[:, None], tokens_a_BxL, tokens_b_BxL)
  rejected = jnp.where(prefer_a[:, None], tokens_b_BxL, tokens_a_BxL)
  chosen_index = jnp.where(prefer_a, 0, 1).astype(jnp.int32)
  valid = (~identical & ~tie).astype(jnp.float32)
  return PreferencePair(chosen_index, 1 - chosen_index, chosen, rejected, valid, identical, tie)


def pair_from_judge(key, tokens_BxKxL, rewards_BxK, *, separator_id: int, temperature=0.0,
                    strategy: str = 'random') -> PreferencePair:
  """One judged pair out of K >= 2 candidates per row.

  strategy 'random': two distinct candidates uniformly at random, labelled by Bradley-Terry;
  'best_worst': the highest- and lowest-reward candidates (first on equal rewards), labelled by
  Bradley-Terry too (at temperature 0 the best is chosen unless all rewards are equal: a tie).
  """
  batch, num = rewards_BxK.shape
  if num < 2:
    raise ValueError('pair_from_judge needs K >= 2 candidates')
  key_pick, key_label = jax.random.split(key)
  if strategy == 'random':
    first = jax.random.randint(key_pick, (batch,), 0, num)
    offset = jax.random.randint(jax.random.fold_in(key_pick, 1), (batch,), 1, num)
    second = (first + offset) % num
  elif strategy == 'best_worst':
    first = jnp.argmax(rewards_BxK, axis=-1)
    second = jnp.argmin(rewards_BxK, axis=-1)
    second = jnp.where(second == first, (first + 1) % num, second)  # all rewards equal
  else:
    raise ValueError(f'pair_from_judge strategy {strategy!r}: random or best_worst')
  rows = jnp.arange(batch)
  pair = preference_pair(key_label, tokens_BxKxL[rows, first], tokens_BxKxL[rows, second],
                         rewards_BxK[rows, first], rewards_BxK[rows, second],
                         separator_id=separator_id, temperature=temperature)
  candidates_Bx2 = jnp.stack([first, second], axis=-1).astype(jnp.int32)
  chosen_index = candidates_Bx2[rows, pair.chosen_index_B]
  rejected_index = candidates_Bx2[rows, pair.rejected_index_B]
  return pair._replace(chosen_index_B=chosen_index, rejected_index_B=rejected_index)


def pair_stats(pair: PreferencePair):
  """Counts to log with every preference batch: pairs, kept, dropped as identical, as ties."""
  return {'pairs': jnp.asarray(pair.valid_B.shape[0], jnp.float32),
          'kept': jnp.sum(pair.valid_B),
          'dropped_identical': jnp.sum(pair.identical_B.astype(jnp.float32)),
          'dropped_tie': jnp.sum((pair.tie_B & ~pair.identical_B).astype(jnp.float32))}


# ---------------------------------------------------------------------------------------------
# Classification and regression judges
# ---------------------------------------------------------------------------------------------

def classification_reward(pred_B, label_B) -> jax.Array:
  """float32: 1 where the predicted label is correct, 0 otherwise."""
  return (jnp.asarray(pred_B) == jnp.asarray(label_B)).astype(jnp.float32)


def classification_pair(key, pred_a_B, pred_b_B, label_B, temperature=0.0):
  """(prefer_a_B, valid_B): correct beats incorrect; both correct or both incorrect is a tie
  (valid 0) at temperature 0, as are identical predictions at any temperature."""
  prefer_a, tie = bradley_terry_labels(key, classification_reward(pred_a_B, label_B),
                                       classification_reward(pred_b_B, label_B), temperature)
  identical = jnp.asarray(pred_a_B) == jnp.asarray(pred_b_B)
  return prefer_a, (~tie & ~identical).astype(jnp.float32)


def gaussian_readout_sample(key, mean_B, std_B) -> jax.Array:
  """A sample of a Gaussian read-out N(mean, std^2)."""
  return mean_B + std_B * jax.random.normal(key, jnp.shape(mean_B))


def regression_reward(pred_B, target_B) -> jax.Array:
  """float32: minus the squared error (the sample nearer the truth has the higher reward)."""
  return -jnp.square(jnp.asarray(pred_B, jnp.float32) - target_B)


def gaussian_expected_reward(mean_B, std_B, target_B) -> jax.Array:
  """Exact E[regression_reward] of a sample of N(mean, std^2): -((mean - target)^2 + std^2)."""
  return -(jnp.square(mean_B - target_B) + jnp.square(std_B))


def regression_pair(key, pred_a_B, pred_b_B, target_B, temperature=0.0):
  """(prefer_a_B, valid_B): the prediction nearer the target wins (a tie at equal distance
  and identical predictions are dropped)."""
  prefer_a, tie = bradley_terry_labels(key, regression_reward(pred_a_B, target_B),
                                       regression_reward(pred_b_B, target_B), temperature)
  identical = jnp.asarray(pred_a_B) == jnp.asarray(pred_b_B)
  return prefer_a, (~tie & ~identical).astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
# A non-transitive judge (Nash learning from human feedback, Munos et al. 2024)
# ---------------------------------------------------------------------------------------------

def cyclic_preference_matrix(p: float = 0.8, num_classes: int = 3) -> jax.Array:
  """P_CxC[i, j] = P(class i preferred to class j): i beats i + 1 (mod C) with probability p,
  1/2 on the diagonal, 1/2 between classes that are not neighbours (C > 3). P + P^T = 1."""
  eye = jnp.eye(num_classes)
  beats = jnp.roll(eye, 1, axis=1)          # beats[i, i + 1] = 1
  return 0.5 + (p - 0.5) * (beats - beats.T)


def completion_class(tokens_L: jax.Array, separator_id: int, num_classes: int = 3) -> jax.Array:
  """The rule that classes a completion: its number of symbols mod num_classes."""
  return num_symbols(tokens_L, separator_id) % num_classes


def preference_prob(tokens_a_L, tokens_b_L, *, separator_id: int, p: float = 0.8,
                    num_classes: int = 3) -> jax.Array:
  """P(a preferred to b) under the rock-paper-scissors judge: the classes' cyclic preference
  (`cyclic_preference_matrix`); 1/2 within a class. No Bradley-Terry reward represents it for
  p != 1/2 (data/bandit.py `bt_fit_residual`)."""
  matrix = cyclic_preference_matrix(p, num_classes)
  return matrix[completion_class(tokens_a_L, separator_id, num_classes),
                completion_class(tokens_b_L, separator_id, num_classes)]
