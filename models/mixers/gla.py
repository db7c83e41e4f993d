"""Gated linear attention (Yang et al. 2023, "Gated Linear Attention Transformers with
Hardware-Efficient Training"), and the chunked kernel the linear-attention family shares.

Recurrence per head, with a data-dependent forget gate alpha_t in (0, 1)^{d_k}:
  S_t = diag(alpha_t) S_{t-1} + k_t^T v_t,    o_t = q_t S_t.
Layer (paper Sec. 4.4): alpha_t = sigmoid(x_t W_a1 W_a2 + b_a)^(1/tau) with a rank-16 W_a1 W_a2
and tau = 16; r_t = swish(x_t W_r + b_r); y_t = (GroupNorm(o_t) * r_t) W_O, with one norm group
per head; d_k = d/2 and d_v = d by default.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from core import require
from models.mixers.attention import head_dim_of, resolve_options
from models.mixers.base import Mixer, MixerSpec, register


def _f32_einsum(subscripts, *operands):
  return jnp.einsum(subscripts, *operands, preferred_element_type=jnp.float32)


def chunked_gated_linear_attention(
    q_BxHxTxK: jax.Array, k_BxHxTxK: jax.Array, v_BxHxTxV: jax.Array,
    log_gate: Optional[jax.Array] = None, *, chunk_size: int = 16,
    initial_state_BxHxKxV: Optional[jax.Array] = None) -> Tuple[jax.Array, jax.Array]:
  """Parallel (chunkwise) form of o_t = q_t S_t, S_t = diag(exp(log_gate_t)) S_{t-1} + k_t^T v_t.

  log_gate: None (no decay: plain causal linear attention), BxHxT (one decay per head and
    position, as in RetNet) or BxHxTxK (one per key channel, as in GLA); entries must be <= 0.
  Returns (o_BxHxTxV in v's dtype, final state S_T as float32 BxHxKxV).

  Numerics: every exponential taken has a non-positive argument. Inside a chunk the decay
  between positions j <= i is exp(b_i - b_j) of in-chunk cumulative log-gates b, formed in
  log space per key channel (a C x C x K tensor per chunk) rather than as
  exp(b_i) * exp(-b_j), which overflows under strong decay. Across chunks the state is
  carried by a scan over T / C chunks in float32.
  """
  B, H, T, K = q_BxHxTxK.shape
  V = v_BxHxTxV.shape[-1]
  C = max(1, min(chunk_size, T))
  pad = (-T) % C
  N = (T + pad) // C
  dtype = q_BxHxTxK.dtype

  def chunks(x, fill=0.0):
    if pad:
      widths = [(0, 0)] * x.ndim
      widths[2] = (0, pad)
      x = jnp.pad(x, widths, constant_values=fill)
    return x.reshape(x.shape[:2] + (N, C) + x.shape[3:])

  # Padding: zero keys add nothing and zero log-gates decay nothing, so S_T is unchanged.
  q, k, v = chunks(q_BxHxTxK), chunks(k_BxHxTxK), chunks(v_BxHxTxV)
  causal_CxC = jnp.tril(jnp.ones((C, C), bool))

  if log_gate is None:
    scores = _f32_einsum('bhnik,bhnjk->bhnij', q, k)
    scores = jnp.where(causal_CxC, scores, 0.0)
    q_from_state, k_to_state = q, k
    chunk_decay = None
  else:
    per_channel = log_gate.ndim == 4
    b = jnp.cumsum(chunks(log_gate.astype(jnp.float32)), axis=3)  # BxHxNxC[xK]
    b_last = b[:, :, :, -1:]
    if per_channel:
      exponent = b[:, :, :, :, None, :] - b[:, :, :, None, :, :]          # BxHxNxCxCxK
      exponent = jnp.where(causal_CxC[:, :, None], exponent, -jnp.inf)
      scores = _f32_einsum('bhnik,bhnjk,bhnijk->bhnij', q, k, jnp.exp(exponent).astype(dtype))
      q_from_state = q * jnp.exp(b).astype(dtype)
      k_to_state = k * jnp.exp(b_last - b).astype(dtype)
      chunk_decay = jnp.exp(b_last[:, :, :, 0])                            # BxHxNxK
    else:
      exponent = b[:, :, :, :, None] - b[:, :, :, None, :]                # BxHxNxCxC
      exponent = jnp.where(causal_CxC, exponent, -jnp.inf)
      scores = _f32_einsum('bhnik,bhnjk->bhnij', q, k) * jnp.exp(exponent)
      q_from_state = q * jnp.exp(b)[..., None].astype(dtype)
      k_to_state = k * jnp.exp(b_last - b)[..., None].astype(dtype)
      chunk_decay = jnp.exp(b_last[:, :, :, 0])[..., None]                # BxHxNx1

  o_intra = _f32_einsum('bhnij,bhnjv->bhniv', scores.astype(dtype), v)
  delta_state = _f32_einsum('bhnjk,bhnjv->bhnkv', k_to_state, v)          # BxHxNxKxV

  state0 = (jnp.zeros((B, H, K, V), jnp.float32) if initial_state_BxHxKxV is None
            else initial_state_BxHxKxV.astype(jnp.float32))

  def advance(state, inputs):
    delta, decay = inputs
    new_state = state + delta if decay is None else decay[..., None] * state + delta
    return new_state, state   # emit the state at the *start* of the chunk

  decays = None if chunk_decay is None else jnp.moveaxis(chunk_decay, 2, 0)
  final_state, start_states = jax.lax.scan(
      advance, state0, (jnp.moveaxis(delta_state, 2, 0), decays))
  start_states = jnp.moveaxis(start_states, 0, 2)                         # BxHxNxKxV
  o_inter = _f32_einsum('bhnik,bhnkv->bhniv', q_from_state, start_states.astype(dtype))
  o = (o_intra + o_inter).reshape(B, H, N * C, V)[:, :, :T]
  return o.astype(v_BxHxTxV.dtype), final_state


def gated_linear_attention_step(q_BxHxK, k_BxHxK, v_BxHxV, log_gate, state_BxHxKxV):
  """One step of the recurrence; log_gate is None, BxH or BxHxK. Returns (o_BxHxV, state)."""
  kv = jnp.einsum('bhk,bhv->bhkv', k_BxHxK.astype(jnp.float32), v_BxHxV.astype(jnp.float32))
  if log_gate is None:
    state = state_BxHxKxV + kv
  else:
    decay = jnp.exp(log_gate.astype(jnp.float32))
    decay = decay[..., None] if log_gate.ndim == 3 else decay[..., None, None]
    state = decay * state_BxHxKxV + kv
  o = jnp.einsum('bhk,bhkv->bhv', q_BxHxK.astype(jnp.float32), state)
  return o.astype(v_BxHxV.dtype), state


class HeadGroupNorm(nnx.Module):
  """GroupNorm with one group per head, applied at each position separately.

  Each head's channels are normalised to zero mean and unit variance (statistics in float32),
  then scaled and shifted per channel; the output is in the compute dtype. `rms=True` is the
  RMSNorm variant (no mean subtracted, no shift).
  """

  def __init__(self, num_heads: int, head_dim: int, *, dtype, param_dtype, eps: float = 1e-5,
               rms: bool = False):
    self.eps = eps
    self.dtype = dtype
    self.rms = rms
    self.scale = nnx.Param(jnp.ones((num_heads, head_dim), param_dtype))
    if not rms:
      self.bias = nnx.Param(jnp.zeros((num_heads, head_dim), param_dtype))

  def __call__(self, x_XxHxV):
    x = x_XxHxV.astype(jnp.float32)
    if self.rms:
      y = x * jax.lax.rsqrt(jnp.square(x).mean(-1, keepdims=True) + self.eps) * self.scale[...]
    else:
      mean = x.mean(-1, keepdims=True)
      var = jnp.square(x - mean).mean(-1, keepdims=True)
      y = (x - mean) * jax.lax.rsqrt(var + self.eps)
      y = y * self.scale[...] + self.bias[...]
    return y.astype(self.dtype)


OUTPUT_NORMS = ('groupnorm', 'rmsnorm', 'none')


def _require_width(name, option, value, spec: MixerSpec) -> int:
  numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
  width = value * spec.d_model if numeric else 0
  require(numeric and value > 0 and float(width).is_integer()
          and int(width) % spec.num_heads == 0,
          f'model.mixer_options.{name}.{option}', value,
          f'd_model * {option} must be a positive multiple of num_heads={spec.num_heads}')
  return int(width) // spec.num_heads


@register('gla')
class GatedLinearAttention(Mixer):
  """GLA layer: data-dependent low-rank per-key-channel forget gate, swish output gate, and
  per-head GroupNorm. Parallel form: the chunked kernel above; step form: S per head.
  """
  default_options = {
      'expand_k': 0.5,              # d_k = expand_k * d_model (paper: d/2)
      'expand_v': 1.0,              # d_v = expand_v * d_model (paper: d)
      'gate_low_rank_dim': 16,      # rank of W_a1 W_a2 (paper: 16)
      'gate_logit_normalizer': 16.0,  # tau in alpha = sigmoid(.)^(1/tau) (paper: 16)
      # Positions per chunk of the parallel form. 8: 1.3-2x faster forward + backward than
      # 16 at 512 and 2048 tokens (d=64, 2 heads, shared 2-core CPU); the C x C x d_k gate tensor is smaller.
      'chunk_size': 8,
      'output_norm': 'groupnorm',   # per-head norm of o: groupnorm (paper: LayerNorm) | rmsnorm
      'gate_bias_init': 0.0,        # initial bias b_a of the gate logits
  }

  def __init__(self, spec: MixerSpec, options: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    name = getattr(self, 'mixer_name', 'gla')
    opts = resolve_options(name, self.default_options, options)
    head_dim_of(spec)
    self.spec = spec
    self.key_dim = _require_width(name, 'expand_k', opts['expand_k'], spec)
    self.value_dim = _require_width(name, 'expand_v', opts['expand_v'], spec)
    rank = opts['gate_low_rank_dim']
    require(isinstance(rank, int) and rank >= 1, f'model.mixer_options.{name}.gate_low_rank_dim',
            rank, 'must be an integer >= 1')
    self.tau = float(opts['gate_logit_normalizer'])
    require(self.tau > 0, f'model.mixer_options.{name}.gate_logit_normalizer', opts[
        'gate_logit_normalizer'], 'must be > 0')
    self.chunk_size = opts['chunk_size']
    require(isinstance(self.chunk_size, int) and self.chunk_size >= 1,
            f'model.mixer_options.{name}.chunk_size', self.chunk_size, 'must be an integer >= 1')
    require(opts['output_norm'] in OUTPUT_NORMS, f'model.mixer_options.{name}.output_norm',
            opts['output_norm'], f'one of {OUTPUT_NORMS}')
    gate_bias = opts['gate_bias_init']
    require(isinstance(gate_bias, (int, float)) and not isinstance(gate_bias, bool)
            and math.isfinite(gate_bias), f'model.mixer_options.{name}.gate_bias_init',
            gate_bias, 'must be a finite number')
    d, H = spec.d_model, spec.num_heads
    dk, dv = H * self.key_dim, H * self.value_dim
    common = dict(dtype=spec.dtype, param_dtype=spec.param_dtype, rngs=rngs)
    self.q_proj = nnx.Linear(d, dk, use_bias=False, **common)
    self.k_proj = nnx.Linear(d, dk, use_bias=False, **common)
    self.v_proj = nnx.Linear(d, dv, use_bias=False, **common)
    self.gate_down = nnx.Linear(d, rank, use_bias=False, **common)
    self.gate_up = nnx.Linear(rank, dk, use_bias=True,
                              bias_init=nnx.initializers.constant(float(gate_bias)), **common)
    self.out_gate = nnx.Linear(d, dv, use_bias=True, **common)
    self.out = nnx.Linear(dv, d, use_bias=False, **common)
    self.output_norm = opts['output_norm']
    if self.output_norm != 'none':
      self.norm = HeadGroupNorm(H, self.value_dim, dtype=spec.dtype, param_dtype=spec.param_dtype,
                                rms=self.output_norm == 'rmsnorm')

  def _inputs(self, x_XxD):
    """q, k (scaled by d_k^-1/2), v, log alpha (float32) and swish gate r, heads split."""
    x = x_XxD.astype(self.spec.dtype)
    H = self.spec.num_heads
    heads = lambda a, width: a.reshape(a.shape[:-1] + (H, width))
    # The 1/sqrt(d_k) only rescales o per head, which the GroupNorm undoes; it keeps bf16 tame.
    q = heads(self.q_proj(x), self.key_dim) * (1.0 / math.sqrt(self.key_dim))
    k = heads(self.k_proj(x), self.key_dim)
    v = heads(self.v_proj(x), self.value_dim)
    gate_logits = self.gate_up(self.gate_down(x)).astype(jnp.float32)
    log_alpha = heads(jax.nn.log_sigmoid(gate_logits) / self.tau, self.key_dim)
    r = jax.nn.swish(self.out_gate(x))
    return q, k, v, log_alpha, r

  def _output(self, o_XxHxV, r_XxDv):
    y = o_XxHxV if self.output_norm == 'none' else self.norm(o_XxHxV)
    y = y.reshape(y.shape[:-2] + (-1,)) * r_XxDv
    return self.out(y)

  def __call__(self, x_BxTxD, *, tokens_BxT=None):
    q, k, v, log_alpha, r = self._inputs(x_BxTxD)
    to_bhtx = lambda a: jnp.swapaxes(a, 1, 2)
    o, _ = chunked_gated_linear_attention(to_bhtx(q), to_bhtx(k), to_bhtx(v), to_bhtx(log_alpha),
                                          chunk_size=self.chunk_size)
    return self._output(to_bhtx(o), r)

  def init_state(self, batch_size: int):
    return {'S': jnp.zeros((batch_size, self.spec.num_heads, self.key_dim, self.value_dim),
                           jnp.float32)}

  def step(self, x_BxD, state, *, token_B=None):
    q, k, v, log_alpha, r = self._inputs(x_BxD)
    o, S = gated_linear_attention_step(q, k, v, log_alpha, state['S'])
    return self._output(o, r), {'S': S}

  def state_size(self) -> int:
    return self.spec.num_heads * self.key_dim * self.value_dim
