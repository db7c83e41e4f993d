"""Next-token metrics of REGBENCH prompts against their automata (Akyurek et al. 2024, Sec. 4).

Token layout (data/regbench.py): 0 = <pad>, 1..V = symbols, V + 1 = separator; K = V + 2 ids.
Prediction position t reads tokens <= t and predicts token t + 1; arrays named `_BxT1` have
T - 1 entries, entry t being the prediction of token t + 1.

The automaton's true next-token distribution after token t, at state s = state_BxT[t] with
l = position_in_string_BxT[t] symbols of the current string read:
  * predict_separator=False (the benchmark): uniform over the outgoing symbols of s; the
    separator gets 0 (it is never a target; this is the authors' `get_dfa_probs`);
  * predict_separator=True: string lengths are uniform on [min_len, max_len], so the string
    ends now with probability p_end = P(L = l | L >= l) = 1 / (max_len - l + 1) if
    l >= min_len (0 before); the separator gets p_end, each outgoing symbol (1 - p_end) / deg.
  * on padding (s = -1) all mass is on <pad> (such targets are masked anyway).
A token is *legal* iff the true distribution gives it positive probability.

Per target (loss_mask = 1):
  accuracy  = 1[argmax of the predicted distribution is legal]   (the authors' `dfa_accuracy`)
  tv        = 0.5 * sum_k |p_pred(k) - p_true(k)|                 (total variation; the
              authors log the L1 distance, i.e. 2 * tv)
  nll       = -log p_pred(target);  perplexity = exp(mean nll)
For distributions with exact zeros (n-gram baselines) the nll uses max(p, prob_floor), 1e-5 by
default, as the authors do (`log(p + 1e-5)`).
"""
from __future__ import annotations

from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

# The automaton's true distribution is a property of the language, so it lives in data/
# (baselines/ needs it too); re-exported here for the metrics below.
from data.languages import (PAD_ID, SYMBOL_OFFSET, automaton_next_token_probs,  # noqa: F401
                            end_probability)


def next_token_metrics(probs_BxTxK: jax.Array, log_probs_BxTxK: jax.Array,
                       true_probs_BxTxK: jax.Array, tokens_BxT: jax.Array,
                       loss_mask_BxT: jax.Array) -> Dict[str, jax.Array]:
  """Per-target accuracy, tv and nll (arrays BxT1, entry t predicts token t + 1) plus
  `weight_BxT1` (the loss mask of the target). Jittable."""
  probs_BxT1xK = probs_BxTxK[:, :-1]
  true_BxT1xK = true_probs_BxTxK[:, :-1]
  targets_BxT1 = tokens_BxT[:, 1:]
  greedy_BxT1 = jnp.argmax(probs_BxT1xK, axis=-1)
  legal_BxT1 = jnp.take_along_axis(true_BxT1xK, greedy_BxT1[..., None], axis=-1)[..., 0] > 0
  tv_BxT1 = 0.5 * jnp.sum(jnp.abs(probs_BxT1xK - true_BxT1xK), axis=-1)
  nll_BxT1 = -jnp.take_along_axis(log_probs_BxTxK[:, :-1], targets_BxT1[..., None],
                                  axis=-1)[..., 0]
  return dict(accuracy_BxT1=legal_BxT1.astype(jnp.float32), tv_BxT1=tv_BxT1,
              nll_BxT1=nll_BxT1, weight_BxT1=loss_mask_BxT[:, 1:].astype(jnp.float32))


def metrics_from_logits(logits_BxTxK, true_probs_BxTxK, tokens_BxT, loss_mask_BxT):
  """`next_token_metrics` of a model's unnormalised logits (softmax in float32)."""
  log_probs = jax.nn.log_softmax(logits_BxTxK.astype(jnp.float32), axis=-1)
  return next_token_metrics(jnp.exp(log_probs), log_probs, true_probs_BxTxK, tokens_BxT,
                            loss_mask_BxT)


def metrics_from_probs(probs_BxTxK, true_probs_BxTxK, tokens_BxT, loss_mask_BxT,
                       prob_floor: float = 1e-5):
  """`next_token_metrics` of normalised probabilities (baselines); nll floored at prob_floor."""
  probs = probs_BxTxK.astype(jnp.float32)
  log_probs = jnp.log(jnp.maximum(probs, prob_floor))
  return next_token_metrics(probs, log_probs, true_probs_BxTxK, tokens_BxT, loss_mask_BxT)


class Accumulator:
  """Sums per-target metrics over batches, overall and by the target's string index."""

  NAMES = ('accuracy', 'tv', 'nll')

  def __init__(self, num_strings: int):
    self.num_strings = num_strings
    self.sums = {name: np.zeros(num_strings) for name in self.NAMES}
    self.count = np.zeros(num_strings)

  def add(self, metrics: Dict[str, np.ndarray], string_index_BxT: np.ndarray,
          row_weight_B: np.ndarray = None) -> None:
    """metrics: output of next_token_metrics (numpy ok); string_index_BxT of the batch;
    row_weight_B: 0 for padding rows of a partial last batch."""
    weight = np.asarray(metrics['weight_BxT1'], np.float64)
    if row_weight_B is not None:
      weight = weight * np.asarray(row_weight_B, np.float64)[:, None]
    index = np.asarray(string_index_BxT)[:, 1:]
    keep = (weight > 0) & (index >= 0) & (index < self.num_strings)
    idx = index[keep]
    w = weight[keep]
    self.count += np.bincount(idx, weights=w, minlength=self.num_strings)
    for name in self.NAMES:
      values = np.asarray(metrics[f'{name}_BxT1'], np.float64)[keep]
      self.sums[name] += np.bincount(idx, weights=w * values, minlength=self.num_strings)

  def result(self) -> Dict[str, object]:
    """{'accuracy', 'tv', 'nll', 'perplexity', 'num_targets', 'by_string': {...}} (JSON-able;
    by_string lists are indexed by string index, None where a string had no targets)."""
    total = float(self.count.sum())
    out: Dict[str, object] = {'num_targets': int(round(total))}
    for name in self.NAMES:
      out[name] = float(self.sums[name].sum() / total) if total > 0 else None
    out['perplexity'] = float(np.exp(out['nll'])) if out['nll'] is not None else None
    by_string: Dict[str, list] = {'count': [int(round(c)) for c in self.count]}
    for name in self.NAMES:
      by_string[name] = [float(s / c) if c > 0 else None
                         for s, c in zip(self.sums[name], self.count)]
    out['by_string'] = by_string
    return out
