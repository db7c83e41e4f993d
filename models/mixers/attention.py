"""Causal softmax multi-head attention, with learned / rotary / ALiBi / no positions.

Also home of the pieces other attention-family mixers share: option resolution, rotary
embeddings (RoPE, Su et al. 2021) and ALiBi slopes (Press et al. 2022).
"""
from __future__ import annotations

import math
from typing import Any, Dict

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from core import require
from models.mixers.base import Mixer, MixerSpec, register

POSITIONS = ('learned', 'rope', 'alibi', 'none')
# Large finite negative instead of -inf: a fully masked row (never produced causally, but
# possible in the step form's unused cache slots) then stays finite rather than NaN.
_MASK_VALUE = -1e30


def resolve_options(name: str, defaults: Dict[str, Any],
                    options: ml_collections.ConfigDict | Dict[str, Any] | None) -> Dict[str, Any]:
  """Returns `defaults` overridden by `options`; an unknown option raises ConfigError."""
  given = dict(options or {})
  for key, value in given.items():
    require(key in defaults, f'model.mixer_options.{name}.{key}', value,
            f'unknown option of mixer {name!r}; known: {sorted(defaults)}')
  merged = dict(defaults)
  merged.update(given)
  return merged


def head_dim_of(spec: MixerSpec, width: int | None = None) -> int:
  """Per-head width of `width` (default d_model) over spec.num_heads; ConfigError if uneven."""
  width = spec.d_model if width is None else width
  require(spec.num_heads >= 1, 'model.num_heads', spec.num_heads, 'must be >= 1')
  require(width % spec.num_heads == 0, 'model.num_heads', spec.num_heads,
          f'must divide the mixer width {width} (model.d_model={spec.d_model})')
  return width // spec.num_heads


def rope_angles(positions: jax.Array, head_dim: int, base: float = 10000.0) -> jax.Array:
  """Angles positions[..., None] * base^(-2i/head_dim), i < head_dim/2: (*positions, head_dim/2)."""
  inv_freq = base ** (-np.arange(0, head_dim // 2, dtype=np.float32) * 2.0 / head_dim)
  return positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)


def apply_rope(x_XxTxHxK: jax.Array, angles_XxTxK2: jax.Array) -> jax.Array:
  """Rotates consecutive pairs (x[2i], x[2i+1]) of the last axis by the given angles.

  `angles` has shape (..., T, K/2) and broadcasts over the head axis. The rotation is
  orthogonal, so norms are kept and <rope(q, m), rope(k, n)> depends on m - n only.
  """
  require(x_XxTxHxK.shape[-1] % 2 == 0, 'model.d_model', x_XxTxHxK.shape[-1],
          'rotary positions need an even head dimension (d_model / num_heads)')
  cos = jnp.cos(angles_XxTxK2)[..., None, :].astype(x_XxTxHxK.dtype)
  sin = jnp.sin(angles_XxTxK2)[..., None, :].astype(x_XxTxHxK.dtype)
  even, odd = x_XxTxHxK[..., 0::2], x_XxTxHxK[..., 1::2]
  rotated = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
  return rotated.reshape(x_XxTxHxK.shape)


def alibi_slopes(num_heads: int) -> np.ndarray:
  """ALiBi head slopes (Press et al.): the geometric sequence 2^(-8/n), 2^(-16/n), ...

  For a head count n that is not a power of two, the slopes of the closest smaller power of
  two m are followed by every other slope of 2m, as in the paper's reference code.
  """
  def power_of_two(n):
    start = 2.0 ** (-8.0 / n)
    return [start ** (i + 1) for i in range(n)]
  if num_heads & (num_heads - 1) == 0:
    slopes = power_of_two(num_heads)
  else:
    closest = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][:num_heads - closest]
  return np.asarray(slopes, dtype=np.float32)


def softmax_attend(q_BxTxHxK, k_BxSxHxK, v_BxSxHxK, bias_XxHxTxS, mask_XxTxS):
  """softmax(q.k / sqrt(K) + bias, masked) @ v, per head; returns (out_BxTxHxK, probs_BxHxTxS).

  Logits are formed in the compute dtype; the softmax itself runs in float32 (exp of bf16
  logits loses too much) and the probabilities are cast back before the value product.
  Einsum rather than jax.nn.dot_product_attention: on CPU at these sizes the forward pass is
  on par and forward+backward was ~1.5x faster (B=32, T=64, H=4, K=16), and one code path
  serves both the parallel and the KV-cache forms.
  """
  scale = 1.0 / math.sqrt(q_BxTxHxK.shape[-1])
  # Heads-major layout for the two batched products (about 10% faster on CPU than
  # contracting in the token-major layout).
  q_BxHxTxK, k_BxHxSxK, v_BxHxSxK = (a.transpose(0, 2, 1, 3)
                                     for a in (q_BxTxHxK, k_BxSxHxK, v_BxSxHxK))
  logits = jnp.einsum('bhtk,bhsk->bhts', q_BxHxTxK, k_BxHxSxK).astype(jnp.float32) * scale
  if bias_XxHxTxS is not None:
    logits = logits + bias_XxHxTxS
  logits = jnp.where(mask_XxTxS[:, None], logits, _MASK_VALUE)
  probs = jax.nn.softmax(logits, axis=-1).astype(v_BxSxHxK.dtype)
  out_BxHxTxK = jnp.einsum('bhts,bhsk->bhtk', probs, v_BxHxSxK)
  return out_BxHxTxK.transpose(0, 2, 1, 3), probs


@register('attention')
class Attention(Mixer):
  """Causal multi-head softmax attention with a fused QKV projection.

  spec.position: 'learned' (added at the embedding by the model; nothing here), 'rope'
  (rotary q, k), 'alibi' (linear distance penalty per head), 'none'.
  Step form: a KV cache of spec.max_len positions plus an int32 position per sequence;
  stepping past max_len is not supported (the write is dropped).
  """
  default_options = {'use_bias': True, 'rope_base': 10000.0}
  # Softmax over a set: without rope / alibi / learned positions only the causal mask tells
  # positions apart. (Inherited by momentum_attention: its momentum term decays with distance,
  # but its attention weights are still orderless, and Dai et al. use it inside a GPT with
  # absolute positions.)
  needs_positions = True

  def __init__(self, spec: MixerSpec, options: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    name = getattr(self, 'mixer_name', 'attention')
    opts = resolve_options(name, self.default_options, options)
    require(spec.position in POSITIONS, 'model.position', spec.position, f'one of {POSITIONS}')
    require(float(opts['rope_base']) > 1.0, f'model.mixer_options.{name}.rope_base',
            opts['rope_base'], 'must be > 1')
    self.spec = spec
    self.head_dim = head_dim_of(spec)
    if spec.position == 'rope':
      require(self.head_dim % 2 == 0, 'model.d_model', spec.d_model,
              'rope needs an even head dimension d_model / num_heads')
    self.rope_base = float(opts['rope_base'])
    d = spec.d_model
    linear = dict(use_bias=bool(opts['use_bias']), dtype=spec.dtype,
                  param_dtype=spec.param_dtype, rngs=rngs)
    self.qkv = nnx.Linear(d, 3 * d, **linear)
    self.out = nnx.Linear(d, d, **linear)
    # A tuple, not an array: static module data must be hashable under nnx.jit.
    self.slopes_H = tuple(float(s) for s in alibi_slopes(spec.num_heads))

  # -- shared pieces -----------------------------------------------------------------------
  def _project(self, x_XxD):
    """q, k, v of shape (..., H, head_dim) in the compute dtype."""
    qkv = self.qkv(x_XxD.astype(self.spec.dtype))
    q, k, v = jnp.split(qkv, 3, axis=-1)
    shape = q.shape[:-1] + (self.spec.num_heads, self.head_dim)
    return q.reshape(shape), k.reshape(shape), v.reshape(shape)

  def _alibi_bias(self, query_pos, key_pos):
    """-slope_h * (query_pos - key_pos), shape (..., H, Tq, Tk), float32."""
    distance = (query_pos[..., :, None] - key_pos[..., None, :]).astype(jnp.float32)
    return -jnp.asarray(self.slopes_H)[:, None, None] * distance[..., None, :, :]

  def _combine(self, attended_XxHxK, extra_XxHxK=None):
    if extra_XxHxK is not None:
      attended_XxHxK = attended_XxHxK + extra_XxHxK
    merged = attended_XxHxK.reshape(attended_XxHxK.shape[:-2] + (self.spec.d_model,))
    return self.out(merged)

  def _parallel_operands(self, x_BxTxD):
    """(q, k, v, bias, mask) of the causal parallel form: positions applied, as attended."""
    _, T, _ = x_BxTxD.shape
    q, k, v = self._project(x_BxTxD)
    positions_T = jnp.arange(T)
    if self.spec.position == 'rope':
      angles = rope_angles(positions_T, self.head_dim, self.rope_base)
      q, k = apply_rope(q, angles), apply_rope(k, angles)
    bias = None
    if self.spec.position == 'alibi':
      bias = self._alibi_bias(positions_T, positions_T)[None]
    mask_1xTxT = jnp.tril(jnp.ones((T, T), bool))[None]
    return q, k, v, bias, mask_1xTxT

  def _attend_parallel(self, x_BxTxD):
    """Returns (attended_BxTxHxK, v_BxTxHxK) of the causal parallel form."""
    q, k, v, bias, mask_1xTxT = self._parallel_operands(x_BxTxD)
    attended, _ = softmax_attend(q, k, v, bias, mask_1xTxT)
    return attended, v

  def attention_probs(self, x_BxTxD):
    """probs_BxHxTxT: the causal softmax weights of the parallel form (rows sum to 1).

    Exactly the weights `__call__` applies to the values (rope / alibi included; learned
    positions are in x already), in the compute dtype. For momentum_attention these are the
    weights of its softmax term only (the value EMA is added beside them).
    """
    q, k, v, bias, mask_1xTxT = self._parallel_operands(x_BxTxD)
    _, probs = softmax_attend(q, k, v, bias, mask_1xTxT)
    return probs

  def _attend_step(self, x_BxD, state):
    """One cached step; returns (attended_BxHxK, v_BxHxK, new_state)."""
    q, k, v = self._project(x_BxD)
    pos_B = state['pos']
    if self.spec.position == 'rope':
      angles = rope_angles(pos_B[:, None], self.head_dim, self.rope_base)  # Bx1xK/2
      q = apply_rope(q[:, None], angles)[:, 0]
      k = apply_rope(k[:, None], angles)[:, 0]
    slot_BxL = jnp.arange(self.spec.max_len)[None, :] == pos_B[:, None]
    write = slot_BxL[:, :, None, None]
    k_cache = jnp.where(write, k[:, None].astype(state['k'].dtype), state['k'])
    v_cache = jnp.where(write, v[:, None].astype(state['v'].dtype), state['v'])
    key_pos_L = jnp.arange(self.spec.max_len)
    mask_Bx1xL = (key_pos_L[None, :] <= pos_B[:, None])[:, None, :]
    bias = None
    if self.spec.position == 'alibi':
      bias = self._alibi_bias(pos_B[:, None], key_pos_L[None, :])
    attended, _ = softmax_attend(q[:, None], k_cache, v_cache, bias, mask_Bx1xL)
    new_state = {'k': k_cache, 'v': v_cache, 'pos': pos_B + 1}
    return attended[:, 0], v, new_state

  # -- Mixer interface ---------------------------------------------------------------------
  def __call__(self, x_BxTxD, *, tokens_BxT=None):
    attended, _ = self._attend_parallel(x_BxTxD)
    return self._combine(attended)

  def init_state(self, batch_size: int):
    shape = (batch_size, self.spec.max_len, self.spec.num_heads, self.head_dim)
    return {'k': jnp.zeros(shape, self.spec.dtype), 'v': jnp.zeros(shape, self.spec.dtype),
            'pos': jnp.zeros((batch_size,), jnp.int32)}

  def step(self, x_BxD, state, *, token_B=None):
    attended, _, state = self._attend_step(x_BxD, state)
    return self._combine(attended), state

  def state_size(self) -> int:
    return 2 * self.spec.max_len * self.spec.d_model
