"""In-context n-gram baselines for REGBENCH (Akyurek et al. 2024, Sec. 4), batched in JAX.

At every position t the model is estimated from the prompt prefix (tokens <= t) only and gives
the distribution of token t + 1 over the K = V + 2 ids (0 = <pad>, 1..V symbols, V + 1 the
separator; data/regbench.py). The scheme is the authors' `predict_with_n_gram_back_off`
(berlino/seq_icl ngram.py), written with counts over *slots*:

  * strings are the pieces between separators; each is read from a start marker, so the
    context of a slot is the m tokens before it within its string, padded with <bos>;
  * slots of the prefix: every symbol (followed its context), every separator (the string's end
    slot: its context occurred without a following symbol) and the open slot t + 1;
  * c_k(h a) = number of symbol slots (end slots too for a = separator when it is predicted)
    with context h and token a; c_{k-1}(h) = number of slots with context h, open slot
    included (so c_k(h a) <= c_{k-1}(h) - 1: the open slot leaves mass to back off with, the
    implicit discount of the authors' code);
  * order k (context m = k - 1) with add-delta smoothing, Katz-style backoff:
        P_k(a | h) = (c_k(h a) + delta) / (c_{k-1}(h) + delta |Sigma|)           if c_k(h a) > 0
                   = beta(h) P_{k-1}(a | h') / sum_{b unseen after h} P_{k-1}(b | h')   otherwise
    with beta(h) = 1 - sum_{a seen after h} P_k(a | h) and h' = h without its first token;
  * P_1(a) = (c_1(a) + delta) / sum_b (c_1(b) + delta), uniform if the prefix has no symbol;
  * the result is renormalised over Sigma (mass is lost only if every candidate was seen).
Sigma = the V symbols, plus the separator if `predict_separator`. With delta = 0 (the
authors' default) unseen symbols get probability 0, as in their model (their vocabulary is the
symbols seen so far). Their lower-order counts also count the extra all-<bos> grams of the
(n-1)-padding (the 1-gram <bos> twice per string for n = 3), which the slot counts do not; this
only rescales probabilities of symbols that are all backed off together, so for delta = 0 the
unigram, bigram and trigram distributions are theirs, up to the final renormalisation (they
keep the lost mass unassigned); a port of their code agreed to 1e-7 on random prompts.

`automaton` (the floor: the true next-token distribution) lives in data/languages.py.
"""
from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp

from data.languages import automaton_next_token_probs

BOS = -1
BASELINES = ('unigram', 'bigram', 'trigram', 'automaton')
NGRAM_ORDERS = {'unigram': 1, 'bigram': 2, 'trigram': 3}


def _contexts_BxPxM(tokens_BxT: jax.Array, separator_id: int, m_max: int) -> jax.Array:
  """ctx[b, p, d - 1] = token p - d if it lies in slot p's string, else BOS; p = 0..T."""
  batch, seq_len = tokens_BxT.shape
  positions = jnp.arange(seq_len)
  last_sep_upto_BxT = jax.lax.cummax(
      jnp.where(tokens_BxT == separator_id, positions[None, :], -1), axis=1)
  # Slot p's string starts after the last separator strictly before p.
  start_BxP = jnp.concatenate(
      [jnp.zeros((batch, 1), jnp.int32), last_sep_upto_BxT.astype(jnp.int32) + 1], axis=1)
  slots = jnp.arange(seq_len + 1)
  contexts = []
  for d in range(1, m_max + 1):
    source_P = slots - d
    token_BxP = jnp.take(tokens_BxT, jnp.clip(source_P, 0, seq_len - 1), axis=1)
    inside_BxP = (source_P[None, :] >= start_BxP) & (source_P[None, :] >= 0)
    contexts.append(jnp.where(inside_BxP, token_BxP, BOS))
  if not contexts:
    return jnp.zeros((batch, seq_len + 1, 0), jnp.int32)
  return jnp.stack(contexts, axis=-1)


def ngram_probs(tokens_BxT: jax.Array, *, n: int, vocab_size: int, delta: float = 0.0,
                predict_separator: bool = False) -> jax.Array:
  """probs_BxTxK: entry t is the n-gram distribution of token t + 1 given tokens <= t.

  Jittable (n, vocab_size, predict_separator static); O(B T^2 (n + K)) work.
  """
  return ngram_probs_by_order(tokens_BxT, n=n, vocab_size=vocab_size, delta=delta,
                              predict_separator=predict_separator)[-1]


def ngram_probs_by_order(tokens_BxT: jax.Array, *, n: int, vocab_size: int,
                         delta: float = 0.0, predict_separator: bool = False):
  """[probs_BxTxK of the 1-gram, 2-gram, ..., n-gram model]: the backoff recursion computes
  every lower order on the way, so all of them cost one n-gram."""
  if n < 1:
    raise ValueError(f'n-gram order must be >= 1, got {n}')
  num_tokens = vocab_size + 2
  separator_id = vocab_size + 1
  batch, seq_len = tokens_BxT.shape
  tokens_BxT = tokens_BxT.astype(jnp.int32)
  ids = jnp.arange(num_tokens)
  candidate_K = (ids >= 1) & (ids <= vocab_size)
  if predict_separator:
    candidate_K = candidate_K | (ids == separator_id)
  candidate_K = candidate_K.astype(jnp.float32)
  num_candidates = jnp.sum(candidate_K)

  is_slot_BxT = ((tokens_BxT >= 1) & (tokens_BxT <= separator_id)).astype(jnp.float32)
  onehot_BxTxK = jax.nn.one_hot(tokens_BxT, num_tokens) * candidate_K * is_slot_BxT[..., None]
  contexts_BxPxM = _contexts_BxPxM(tokens_BxT, separator_id, n - 1)
  open_BxTxM = contexts_BxPxM[:, 1:]        # prediction t: the open slot t + 1
  slot_BxTxM = contexts_BxPxM[:, :-1]       # slot j < T
  # Slot j counts for prediction t iff j <= t.
  causal_TxT = jnp.tril(jnp.ones((seq_len, seq_len), jnp.float32))
  match_BxTxT = causal_TxT[None] * is_slot_BxT[:, None, :]

  probs_BxTxK = None
  by_order = []
  for k in range(1, n + 1):
    m = k - 1
    if m > 0:
      same = open_BxTxM[:, :, None, m - 1] == slot_BxTxM[:, None, :, m - 1]
      match_BxTxT = match_BxTxT * same.astype(jnp.float32)
    counts_BxTxK = jnp.einsum('btj,bjk->btk', match_BxTxT, onehot_BxTxK)
    if k == 1:
      smoothed = (counts_BxTxK + delta) * candidate_K
      total_BxT = smoothed.sum(-1, keepdims=True)
      uniform = candidate_K / num_candidates
      probs_BxTxK = jnp.where(total_BxT > 0, smoothed / jnp.maximum(total_BxT, 1e-30),
                              uniform)
      by_order.append(probs_BxTxK)
      continue
    context_count_BxT = match_BxTxT.sum(-1) + 1.0  # + the open slot
    seen_BxTxK = (counts_BxTxK > 0).astype(jnp.float32)
    p_seen = seen_BxTxK * (counts_BxTxK + delta) / (
        context_count_BxT + delta * num_candidates)[..., None]
    beta_BxT = 1.0 - p_seen.sum(-1)
    lower_unseen = probs_BxTxK * (1.0 - seen_BxTxK) * candidate_K
    mass_BxT = lower_unseen.sum(-1)
    backoff = lower_unseen * jnp.where(mass_BxT > 0, beta_BxT / jnp.maximum(mass_BxT, 1e-30),
                                       0.0)[..., None]
    probs_BxTxK = p_seen + backoff
    # The next order only uses ratios of P_k, so it continues from the unnormalised P_k;
    # the distribution returned for order k is renormalised over Sigma.
    total = probs_BxTxK.sum(-1, keepdims=True)
    by_order.append(jnp.where(total > 0, probs_BxTxK / jnp.maximum(total, 1e-30),
                              candidate_K / num_candidates))
  return by_order


def all_baseline_probs(arrays: Dict[str, jax.Array], *, vocab_size: int, min_string_len: int,
                       max_string_len: int, predict_separator: bool,
                       delta: float = 0.0) -> Dict[str, jax.Array]:
  """{name: probs_BxTxK} for every name in BASELINES, the n-grams from one trigram pass."""
  by_order = ngram_probs_by_order(arrays['tokens_BxT'], n=max(NGRAM_ORDERS.values()),
                                  vocab_size=vocab_size, delta=delta,
                                  predict_separator=predict_separator)
  out = {name: by_order[k - 1] for name, k in NGRAM_ORDERS.items()}
  out['automaton'] = baseline_probs('automaton', arrays, vocab_size=vocab_size,
                                    min_string_len=min_string_len,
                                    max_string_len=max_string_len,
                                    predict_separator=predict_separator)
  return out


def baseline_probs(name: str, arrays: Dict[str, jax.Array], *, vocab_size: int,
                   min_string_len: int, max_string_len: int, predict_separator: bool,
                   delta: float = 0.0) -> jax.Array:
  """probs_BxTxK of baseline `name` (one of BASELINES) for a batch.

  arrays: tokens_BxT, and for 'automaton' also tables_BxSxV, state_BxT,
  position_in_string_BxT.
  """
  if name in NGRAM_ORDERS:
    return ngram_probs(arrays['tokens_BxT'], n=NGRAM_ORDERS[name], vocab_size=vocab_size,
                       delta=delta, predict_separator=predict_separator)
  if name == 'automaton':
    return automaton_next_token_probs(
        arrays['tables_BxSxV'], arrays['state_BxT'], arrays['position_in_string_BxT'],
        vocab_size=vocab_size, min_string_len=min_string_len, max_string_len=max_string_len,
        predict_separator=predict_separator)
  raise ValueError(f'unknown baseline {name!r}: known {", ".join(BASELINES)}')
