"""Momentum-based attention (Dai et al. 2023, "Why Can GPT Learn In-Context? Language Models
Implicitly Perform Gradient Descent as Meta-Optimizers", Sec. 5).

Reading attention as a gradient-descent step whose updates are the value vectors, the paper
adds momentum to it: the query at position t receives, besides causal softmax attention,
an exponential moving average of the values of the earlier positions,

  MoAttn(V, K, q_t) = Attn(V, K, q_t) + sum_{i=1}^{t-1} eta^(t-i) v_i,

per head, before the output projection. eta is a fixed scalar.
"""
from __future__ import annotations

import jax.numpy as jnp
import ml_collections
from flax import nnx

from core import require
from models.mixers.attention import Attention, resolve_options
from models.mixers.base import MixerSpec, register


def momentum_matrix(seq_len: int, eta: float):
  """M[t, i] = eta^(t-i) for i < t, else 0 (float32, seq_len x seq_len)."""
  t = jnp.arange(seq_len)
  distance = t[:, None] - t[None, :]
  # eta ** 0 on the diagonal is masked away, so eta = 0 needs no special case.
  return jnp.where(distance > 0, jnp.float32(eta) ** jnp.maximum(distance, 1), 0.0)


@register('momentum_attention')
class MomentumAttention(Attention):
  """Causal softmax attention plus the value EMA of Dai et al.; positions as in 'attention'.

  Step form: the attention KV cache and position counter, plus the running
  c_t = sum_{i<=t} eta^(t-i) v_i per head (the momentum at t is eta * c_{t-1}).
  """
  default_options = {'use_bias': True, 'rope_base': 10000.0, 'eta': 0.5}

  def __init__(self, spec: MixerSpec, options: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    super().__init__(spec, options, rngs=rngs)
    opts = resolve_options(self.mixer_name, self.default_options, options)
    self.eta = float(opts['eta'])
    require(0.0 <= self.eta < 1.0, f'model.mixer_options.{self.mixer_name}.eta', opts['eta'],
            'the momentum decay must lie in [0, 1)')

  def __call__(self, x_BxTxD, *, tokens_BxT=None):
    attended, v_BxTxHxK = self._attend_parallel(x_BxTxD)
    decay_TxT = momentum_matrix(x_BxTxD.shape[1], self.eta).astype(v_BxTxHxK.dtype)
    momentum = jnp.einsum('ts,bshk->bthk', decay_TxT, v_BxTxHxK)
    return self._combine(attended, momentum)

  def init_state(self, batch_size: int):
    state = super().init_state(batch_size)
    state['values_ema'] = jnp.zeros((batch_size, self.spec.num_heads, self.head_dim),
                                    jnp.float32)
    return state

  def step(self, x_BxD, state, *, token_B=None):
    ema = state['values_ema']
    attn_state = {key: value for key, value in state.items() if key != 'values_ema'}
    attended, v_BxHxK, attn_state = self._attend_step(x_BxD, attn_state)
    momentum = (self.eta * ema).astype(attended.dtype)
    attn_state['values_ema'] = self.eta * ema + v_BxHxK.astype(jnp.float32)
    return self._combine(attended, momentum), attn_state

  def state_size(self) -> int:
    return super().state_size() + self.spec.d_model
