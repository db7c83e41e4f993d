"""The true next-token distribution of a REGBENCH prompt under its automaton.

See analysis/language_metrics.py for the token layout and how the distribution is defined
(uniform over outgoing edges; with predict_separator the separator takes P(string ends now)).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

PAD_ID = 0
SYMBOL_OFFSET = 1


def end_probability(position_BxT: jax.Array, min_len: int, max_len: int) -> jax.Array:
  """P(the string ends now | l symbols read), lengths uniform on [min_len, max_len]."""
  l = position_BxT.astype(jnp.float32)
  remaining = jnp.maximum(max_len - l + 1.0, 1.0)
  return jnp.where(position_BxT >= min_len, 1.0 / remaining, 0.0)


def automaton_next_token_probs(tables_BxSxV: jax.Array, state_BxT: jax.Array,
                               position_BxT: jax.Array, *, vocab_size: int,
                               min_string_len: int, max_string_len: int,
                               predict_separator: bool) -> jax.Array:
  """The true next-token distribution probs_BxTxK after every token (module docstring)."""
  num_states = tables_BxSxV.shape[1]
  safe_state_BxT = jnp.clip(state_BxT, 0, num_states - 1)
  rows_BxTxV = jnp.take_along_axis(tables_BxSxV, safe_state_BxT[:, :, None], axis=1)
  edge_BxTxV = (rows_BxTxV >= 0).astype(jnp.float32)
  degree_BxT = jnp.maximum(edge_BxTxV.sum(-1), 1.0)
  if predict_separator:
    p_end_BxT = end_probability(position_BxT, min_string_len, max_string_len)
  else:
    p_end_BxT = jnp.zeros(state_BxT.shape, jnp.float32)
  symbols_BxTxV = edge_BxTxV * ((1.0 - p_end_BxT) / degree_BxT)[..., None]
  probs_BxTxK = jnp.concatenate(
      [jnp.zeros(state_BxT.shape + (1,)), symbols_BxTxV, p_end_BxT[..., None]], axis=-1)
  pad_BxTxK = jax.nn.one_hot(jnp.full(state_BxT.shape, PAD_ID), vocab_size + 2)
  return jnp.where((state_BxT >= 0)[..., None], probs_BxTxK, pad_BxTxK)
