"""Hard-wired n-gram head (NGH) of Akyurek et al. 2024, "In-Context Language Learning:
Architectures and Algorithms", Sec. 6 (their `Ngram` layer in berlino/seq_icl).

Attention whose weights are fixed by the input tokens, not learned: position t attends
uniformly to every earlier position j < t whose preceding n - 1 tokens equal the n - 1 tokens
ending at t,
    x_{j-n+1} .. x_{j-1}  ==  x_{t-n+2} .. x_t ,
and reads the hidden state at j, i.e. the token that followed an earlier occurrence of the
current context. Averaging the one-hot tokens so read gives exactly the in-context n-gram
distribution of the next token; with n = 2 this is an induction head. Positions with no match
read zeros. As in the authors' layer, the output is
    y_t = W_read (mean_j h_j) + b_read + W_skip h_t + b_skip
(two learned linear maps; the skip path lets a layer pass its input on).

The step form keeps every token and hidden state seen so far (max_len of each, like a KV
cache); state_size counts the float entries, max_len * d_model.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from models.mixers.base import Mixer, MixerSpec, register


def _match_TxT(tokens_BxT: jax.Array, context: int) -> jax.Array:
  """match[b, t, j] = 1 iff j < t and tokens[j-1-d] == tokens[t-d] for d < context (all
  indices inside the sequence)."""
  _, seq_len = tokens_BxT.shape
  t = jnp.arange(seq_len)[:, None]
  j = jnp.arange(seq_len)[None, :]
  match = jnp.broadcast_to(j < t, (tokens_BxT.shape[0], seq_len, seq_len))
  for d in range(context):
    query_BxT = jnp.take(tokens_BxT, jnp.clip(jnp.arange(seq_len) - d, 0), axis=1)
    key_BxT = jnp.take(tokens_BxT, jnp.clip(jnp.arange(seq_len) - 1 - d, 0), axis=1)
    valid = (t - d >= 0) & (j - 1 - d >= 0)
    match = match & valid[None] & (query_BxT[:, :, None] == key_BxT[:, None, :])
  return match


@register('ngram_head')
class NgramHead(Mixer):
  """Hard-wired n-gram head; option n >= 1 (n - 1 tokens of context, n = 1: uniform over
  the past)."""
  default_options = {'n': 3}
  # No positions needed: which earlier positions are read is decided by the tokens at fixed
  # relative offsets (t - d against j - 1 - d), i.e. the head compares local order itself.
  # Its average over the matches is orderless, but that is the n-gram statistic it is meant
  # to compute; positions would not enter it anyway (the weights are fixed by the tokens).
  needs_positions = False

  def __init__(self, spec: MixerSpec, options: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    n = int(options.get('n', 3))
    if n < 1:
      raise ValueError(f'ngram_head option n={n} is invalid: an integer >= 1')
    self.n = n
    self.context = n - 1
    self.d_model = spec.d_model
    self.max_len = spec.max_len
    self.dtype = spec.dtype
    self.read = nnx.Linear(spec.d_model, spec.d_model, dtype=spec.dtype,
                           param_dtype=spec.param_dtype, rngs=rngs)
    self.skip = nnx.Linear(spec.d_model, spec.d_model, dtype=spec.dtype,
                           param_dtype=spec.param_dtype, rngs=rngs)

  def _combine(self, read_BxD, x_BxD):
    return self.read(read_BxD) + self.skip(x_BxD)

  def __call__(self, x_BxTxD, *, tokens_BxT=None):
    if tokens_BxT is None:
      raise ValueError('ngram_head needs token inputs (tokens_BxT); it has no meaning for '
                       'vector tasks')
    x_BxTxD = x_BxTxD.astype(self.dtype)
    match_BxTxT = _match_TxT(tokens_BxT, self.context).astype(jnp.float32)
    weights_BxTxT = match_BxTxT / jnp.maximum(match_BxTxT.sum(-1, keepdims=True), 1.0)
    read_BxTxD = jnp.einsum('btj,bjd->btd', weights_BxTxT.astype(self.dtype), x_BxTxD)
    return self._combine(read_BxTxD, x_BxTxD)

  def init_state(self, batch_size: int):
    return {
        'tokens_BxL': jnp.zeros((batch_size, self.max_len), jnp.int32),
        'values_BxLxD': jnp.zeros((batch_size, self.max_len, self.d_model), self.dtype),
        'position_B': jnp.zeros((batch_size,), jnp.int32),
    }

  def step(self, x_BxD, state, *, token_B=None):
    if token_B is None:
      raise ValueError('ngram_head needs token inputs (token_B)')
    x_BxD = x_BxD.astype(self.dtype)
    t_B = state['position_B']
    rows = jnp.arange(x_BxD.shape[0])
    tokens_BxL = state['tokens_BxL'].at[rows, t_B].set(token_B.astype(jnp.int32))
    values_BxLxD = state['values_BxLxD'].at[rows, t_B].set(x_BxD)
    positions_L = jnp.arange(self.max_len)
    t_Bx1 = t_B[:, None]
    match_BxL = positions_L[None, :] < t_Bx1
    for d in range(self.context):
      query_B = jnp.take_along_axis(tokens_BxL, jnp.clip(t_Bx1 - d, 0), axis=1)
      key_BxL = jnp.take(tokens_BxL, jnp.clip(positions_L - 1 - d, 0), axis=1)
      valid_BxL = (t_Bx1 - d >= 0) & (positions_L[None, :] - 1 - d >= 0)
      match_BxL = match_BxL & valid_BxL & (key_BxL == query_B)
    match_BxL = match_BxL.astype(jnp.float32)
    weights_BxL = match_BxL / jnp.maximum(match_BxL.sum(-1, keepdims=True), 1.0)
    read_BxD = jnp.einsum('bl,bld->bd', weights_BxL.astype(self.dtype), values_BxLxD)
    new_state = {'tokens_BxL': tokens_BxL, 'values_BxLxD': values_BxLxD,
                 'position_B': t_B + 1}
    return self._combine(read_BxD, x_BxD), new_state

  def state_size(self) -> int:
    return self.max_len * self.d_model
