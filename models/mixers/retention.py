"""Multi-scale retention (Sun et al. 2023, "Retentive Network: A Successor to Transformer for
Large Language Models").

Per head h with fixed decay gamma_h = 1 - 2^(-5-h), h = 0..H-1:
  parallel:   Retention(X) = (Q K^T * D) V,  D[n, m] = gamma^(n-m) for n >= m, else 0
  recurrent:  S_n = gamma S_{n-1} + k_n^T v_n,  o_n = q_n S_n
with Q = (X W_Q) * Theta, K = (X W_K) * conj(Theta) (the rotation e^{i n theta} applied to
consecutive channel pairs, i.e. rotary positions) and K scaled by d_k^-1/2. Then
  MSR(X) = (swish(X W_G) * GroupNorm_h(o)) W_O,  one norm group per head; d_v = 2 d_k.
The parallel form here is the chunkwise one (paper Sec. 2.2), exact up to float rounding;
the paper's extra fp16 normalisations of D and of Q K^T are omitted: each rescales a head's
output at a position by a positive constant, which the GroupNorm removes.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from core import require
from models.mixers.attention import apply_rope, head_dim_of, resolve_options, rope_angles
from models.mixers.base import Mixer, MixerSpec, register
from models.mixers.gla import (HeadGroupNorm, _require_width, chunked_gated_linear_attention,
                               gated_linear_attention_step)


def retention_log_decays(num_heads: int) -> np.ndarray:
  """log gamma_h with gamma_h = 1 - 2^(-5-h), h = 0..num_heads-1 (float32)."""
  exponents = -5.0 - np.arange(num_heads, dtype=np.float64)
  return np.log1p(-np.exp2(exponents)).astype(np.float32)


@register('retention')
class MultiScaleRetention(Mixer):
  """RetNet's multi-scale retention: fixed per-head decays, rotary q/k, GroupNorm, swish gate.

  Step form: S per head plus an int32 position per sequence (for the rotation).
  """
  default_options = {
      'expand_v': 2.0,        # d_v = expand_v * d_model (paper: value dim twice the key dim)
      'rope_base': 10000.0,   # theta_i = rope_base^(-2i/d_k)
      'chunk_size': 16,       # positions per chunk of the parallel form
  }

  def __init__(self, spec: MixerSpec, options: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    name = getattr(self, 'mixer_name', 'retention')
    opts = resolve_options(name, self.default_options, options)
    self.spec = spec
    self.key_dim = head_dim_of(spec)
    require(self.key_dim % 2 == 0, 'model.d_model', spec.d_model,
            'retention rotates channel pairs: d_model / num_heads must be even')
    self.value_dim = _require_width(name, 'expand_v', opts['expand_v'], spec)
    self.rope_base = float(opts['rope_base'])
    require(self.rope_base > 1.0, f'model.mixer_options.{name}.rope_base', opts['rope_base'],
            'must be > 1')
    self.chunk_size = opts['chunk_size']
    require(isinstance(self.chunk_size, int) and self.chunk_size >= 1,
            f'model.mixer_options.{name}.chunk_size', self.chunk_size, 'must be an integer >= 1')
    # A tuple, not an array: static module data must be hashable under nnx.jit.
    self.log_decays_H = tuple(float(g) for g in retention_log_decays(spec.num_heads))
    d, H = spec.d_model, spec.num_heads
    dv = H * self.value_dim
    common = dict(use_bias=False, dtype=spec.dtype, param_dtype=spec.param_dtype, rngs=rngs)
    self.q_proj = nnx.Linear(d, d, **common)
    self.k_proj = nnx.Linear(d, d, **common)
    self.v_proj = nnx.Linear(d, dv, **common)
    self.g_proj = nnx.Linear(d, dv, **common)
    self.out = nnx.Linear(dv, d, **common)
    self.norm = HeadGroupNorm(H, self.value_dim, dtype=spec.dtype, param_dtype=spec.param_dtype)

  def _inputs(self, x_XxTxD, positions_XxT):
    """Rotated q, scaled rotated k, v (heads split: ...xTxHxK) and swish gate."""
    x = x_XxTxD.astype(self.spec.dtype)
    H = self.spec.num_heads
    heads = lambda a, width: a.reshape(a.shape[:-1] + (H, width))
    angles = rope_angles(positions_XxT, self.key_dim, self.rope_base)
    q = apply_rope(heads(self.q_proj(x), self.key_dim), angles)
    k = apply_rope(heads(self.k_proj(x), self.key_dim), angles) * (1.0 / math.sqrt(self.key_dim))
    v = heads(self.v_proj(x), self.value_dim)
    return q, k, v, jax.nn.swish(self.g_proj(x))

  def _output(self, o_XxHxV, g_XxDv):
    y = self.norm(o_XxHxV)
    return self.out(y.reshape(y.shape[:-2] + (-1,)) * g_XxDv)

  def __call__(self, x_BxTxD, *, tokens_BxT=None):
    B, T, _ = x_BxTxD.shape
    q, k, v, g = self._inputs(x_BxTxD, jnp.arange(T)[None])
    to_bhtx = lambda a: jnp.swapaxes(a, 1, 2)
    log_gate = jnp.broadcast_to(jnp.asarray(self.log_decays_H)[None, :, None],
                                (B, self.spec.num_heads, T))
    o, _ = chunked_gated_linear_attention(to_bhtx(q), to_bhtx(k), to_bhtx(v), log_gate,
                                          chunk_size=self.chunk_size)
    return self._output(to_bhtx(o), g)

  def init_state(self, batch_size: int):
    H = self.spec.num_heads
    return {'S': jnp.zeros((batch_size, H, self.key_dim, self.value_dim), jnp.float32),
            'pos': jnp.zeros((batch_size,), jnp.int32)}

  def step(self, x_BxD, state, *, token_B=None):
    q, k, v, g = self._inputs(x_BxD[:, None], state['pos'][:, None])
    log_gate = jnp.broadcast_to(jnp.asarray(self.log_decays_H), (x_BxD.shape[0],
                                                                 self.spec.num_heads))
    o, S = gated_linear_attention_step(q[:, 0], k[:, 0], v[:, 0], log_gate, state['S'])
    return self._output(o, g[:, 0]), {'S': S, 'pos': state['pos'] + 1}

  def state_size(self) -> int:
    return self.spec.num_heads * self.key_dim * self.value_dim
