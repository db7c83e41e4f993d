"""RWKV-4 time mixing (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era").

Token shift mixes each position with the previous one, per channel:
  x^k_t = mu_k x_t + (1 - mu_k) x_{t-1}   (likewise x^v, x^r),
  r_t = sigmoid(W_r x^r_t),  k_t = W_k x^k_t,  v_t = W_v x^v_t,
and the WKV operator with per-channel decay w = exp(time_decay) > 0 and bonus u:
  wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
          / (sum_{i<t} e^{-(t-1-i) w + k_i}     + e^{u + k_t}),
  y_t = W_o (r_t * wkv_t).
WKV is evaluated as its recurrence with a running maximum exponent p, so that numerator a
and denominator b are stored as a e^p, b e^p and no exponential ever overflows. The parallel
form is either the same recurrence under jax.lax.scan (chunk_size=0; the projections are done
for all positions at once outside it) or chunk-parallel (`chunked_wkv`): within a chunk a
masked, decay-weighted sum over positions, across chunks a scan over chunk states kept in the
same (a, b, p) form.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from core import require
from models.mixers.attention import resolve_options
from models.mixers.base import Mixer, MixerSpec, register

# Stand-in for log(0) in the initial running maximum: finite so that p - w and p - q stay
# finite (−inf − (−inf) would be NaN), small enough that exp(p - q) underflows to 0.
_NEG_BIG = -1e38


def wkv_step(carry, k_BxD, v_BxD, w_D, u_D):
  """One stable WKV step. carry = (a, b, p) after position t-1; returns (wkv_t, new carry)."""
  a, b, p = carry
  bonus = u_D + k_BxD
  m = jnp.maximum(p, bonus)
  e_state, e_now = jnp.exp(p - m), jnp.exp(bonus - m)
  wkv = (e_state * a + e_now * v_BxD) / (e_state * b + e_now)
  decayed = p - w_D
  m = jnp.maximum(decayed, k_BxD)
  e_state, e_now = jnp.exp(decayed - m), jnp.exp(k_BxD - m)
  return wkv, (e_state * a + e_now * v_BxD, e_state * b + e_now, m)


def chunked_wkv(k_BxTxD, v_BxTxD, w_D, u_D, chunk_size: int):
  """wkv_BxTxD of the recurrence `wkv_step` from the zero state, C = chunk_size positions per
  chunk (float32).

  For position i of a chunk whose start state is (a, b, p), the terms of wkv_i have exponents
  p - i w (the state), k_j - (i-1-j) w (earlier positions j of the chunk) and u + k_i (the
  bonus). Each is taken relative to its row's maximum, so every exponential has an argument
  <= 0, as in the running-maximum recurrence. The chunk states come from a scan over the T / C
  chunk summaries (exponents k_j - (C-1-j) w, relative to their maximum). The maxima are
  shift constants the result does not depend on, so no gradient flows through them. T need
  not divide by C: the tail is padded and sliced off (causality keeps it out of the outputs).
  """
  B, T, D = k_BxTxD.shape
  C = max(1, min(chunk_size, T))
  pad = (-T) % C
  M = (T + pad) // C

  def chunks(a_BxTxD):
    a_BxTxD = jnp.pad(a_BxTxD.astype(jnp.float32), ((0, 0), (0, pad), (0, 0)))
    return a_BxTxD.reshape(B, M, C, D)

  k, v = chunks(k_BxTxD), chunks(v_BxTxD)
  w, u = w_D.astype(jnp.float32), u_D.astype(jnp.float32)
  pos_C = jnp.arange(C, dtype=jnp.float32)
  # Chunk summaries: the chunk's contribution to (a, b, p) at its last position.
  summary = k - (C - 1 - pos_C)[:, None] * w                        # B x M x C x D
  p_sum = jax.lax.stop_gradient(summary.max(axis=2))               # B x M x D
  e_sum = jnp.exp(summary - p_sum[:, :, None])
  a_sum, b_sum = (e_sum * v).sum(axis=2), e_sum.sum(axis=2)
  chunk_decay = C * w

  def advance(carry, inputs):
    a, b, p = carry
    a_c, b_c, p_c = inputs
    p_new = jax.lax.stop_gradient(jnp.maximum(p - chunk_decay, p_c))
    e_state, e_chunk = jnp.exp(p - chunk_decay - p_new), jnp.exp(p_c - p_new)
    return (e_state * a + e_chunk * a_c, e_state * b + e_chunk * b_c, p_new), carry

  time_major = tuple(jnp.moveaxis(a, 1, 0) for a in (a_sum, b_sum, p_sum))
  _, starts = jax.lax.scan(advance, wkv_initial_carry(B, D), time_major)
  a0, b0, p0 = (jnp.moveaxis(a, 0, 1)[:, :, None] for a in starts)   # B x M x 1 x D
  # Output i reads the state (decayed i steps), earlier chunk positions j < i, and itself.
  lag_CxC = pos_C[:, None] - 1 - pos_C[None, :]                    # i - 1 - j
  earlier = k[:, :, None] - lag_CxC[:, :, None] * w                # B x M x C(i) x C(j) x D
  i_CxC, j_CxC = jnp.meshgrid(jnp.arange(C), jnp.arange(C), indexing='ij')
  exponent = jnp.where((j_CxC < i_CxC)[:, :, None], earlier,
                       jnp.where((j_CxC == i_CxC)[:, :, None], (u + k)[:, :, None], -jnp.inf))
  e_state_exp = p0 - pos_C[:, None] * w                            # B x M x C x D
  m = jax.lax.stop_gradient(jnp.maximum(e_state_exp, exponent.max(axis=3)))
  e_state = jnp.exp(e_state_exp - m)
  e_in = jnp.exp(exponent - m[:, :, :, None])
  num = e_state * a0 + jnp.einsum('bmijd,bmjd->bmid', e_in, v)
  den = e_state * b0 + e_in.sum(axis=3)
  return (num / den).reshape(B, M * C, D)[:, :T]


def wkv_initial_carry(batch_size: int, width: int):
  zeros = jnp.zeros((batch_size, width), jnp.float32)
  return (zeros, zeros, jnp.full((batch_size, width), _NEG_BIG, jnp.float32))


def rwkv4_depth_ratios(layer_index: int, num_layers: int):
  """RWKV-4's (ratio_0_to_1, ratio_1_to_almost0) = (l / (L - 1), 1 - l / L) for layer l of L.

  With one layer RWKV-4's l / (L - 1) is 0 / 0; it is taken as 0 (the first layer's value).
  """
  ratio_0_to_1 = layer_index / (num_layers - 1) if num_layers > 1 else 0.0
  return float(ratio_0_to_1), 1.0 - layer_index / num_layers


def rwkv4_time_mix_init(d: int, layer_index: int, num_layers: int):
  """RWKV-4's initial time_decay, time_first, time_mix_k / v / r (float64, d channels each)."""
  depth, shallow = rwkv4_depth_ratios(layer_index, num_layers)
  channel = np.arange(d, dtype=np.float64)
  frac = channel / d                       # RWKV-4: i / n_embd for the token-shift mixes
  return {
      'time_decay': -5.0 + 8.0 * (channel / max(d - 1, 1)) ** (0.7 + 1.3 * depth),
      'time_first': np.log(0.3) + ((channel + 1) % 3 - 1) * 0.5,   # zigzag around log 0.3
      'mix_k': frac ** shallow,
      'mix_v': frac ** shallow + 0.3 * depth,
      'mix_r': frac ** (0.5 * shallow),
  }


@register('rwkv')
class RWKVTimeMix(Mixer):
  """RWKV-4 time-mixing block (per-channel, spec.num_heads unused).

  Initialisation as RWKV-4's: the decay, bonus and token-shift mixes depend on the layer
  (spec.layer_index of spec.num_layers, see `rwkv4_time_mix_init`); the value projection is
  orthogonal (gain 1) and the key, receptance and output projections are zero, so a fresh
  block adds nothing to the residual stream (the output projection is the first to get a
  gradient, through r = 1/2 and wkv = a decayed mean of the values).
  Option zero_init=False draws key, receptance and output LeCun-normal instead (a fresh mixer
  is then not the constant 0, e.g. for tests of its function).
  Option chunk_size: 0 runs WKV as its recurrence under `lax.scan`; C >= 1 the chunk-parallel
  form (`chunked_wkv`) with C positions per chunk. Both give the same function.
  Step form carries (previous x, a, b, p): 4 * d_model floats.
  """
  # chunk_size 0: on a 2-core CPU chunks of 4-16 were no faster than the scan at 128-2048
  # tokens (d=64), and slower from 8 on.
  default_options = {'zero_init': True, 'chunk_size': 0}

  def __init__(self, spec: MixerSpec, options: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    name = getattr(self, 'mixer_name', 'rwkv')
    opts = resolve_options(name, self.default_options, options)
    require(isinstance(opts['zero_init'], bool), f'model.mixer_options.{name}.zero_init',
            opts['zero_init'], 'must be True or False')
    chunk_size = opts['chunk_size']
    require(isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size >= 0,
            f'model.mixer_options.{name}.chunk_size', chunk_size,
            'must be 0 (the recurrence under lax.scan) or an integer >= 1')
    self.chunk_size = chunk_size
    require(spec.num_layers >= 1 and 0 <= spec.layer_index < spec.num_layers,
            'model.num_layers', spec.num_layers,
            f'must exceed the layer index {spec.layer_index}')
    self.spec = spec
    d = spec.d_model
    init = rwkv4_time_mix_init(d, spec.layer_index, spec.num_layers)
    as_param = lambda a: nnx.Param(jnp.asarray(a, spec.param_dtype))
    self.time_decay = as_param(init['time_decay'])    # w = exp(time_decay)
    self.time_first = as_param(init['time_first'])    # u
    self.mix_k = as_param(init['mix_k'])
    self.mix_v = as_param(init['mix_v'])
    self.mix_r = as_param(init['mix_r'])
    common = dict(use_bias=False, dtype=spec.dtype, param_dtype=spec.param_dtype, rngs=rngs)
    zero = dict(kernel_init=nnx.initializers.zeros_init()) if opts['zero_init'] else {}
    self.key = nnx.Linear(d, d, **common, **zero)
    self.value = nnx.Linear(d, d, **common, kernel_init=nnx.initializers.orthogonal())
    self.receptance = nnx.Linear(d, d, **common, **zero)
    self.output = nnx.Linear(d, d, **common, **zero)

  def _rkv(self, x, x_prev):
    dtype = self.spec.dtype
    mix = lambda m: (x * m[...].astype(dtype) + x_prev * (1 - m[...]).astype(dtype))
    r = jax.nn.sigmoid(self.receptance(mix(self.mix_r)))
    k = self.key(mix(self.mix_k)).astype(jnp.float32)
    v = self.value(mix(self.mix_v)).astype(jnp.float32)
    return r, k, v

  def _decay_bonus(self):
    return jnp.exp(self.time_decay[...].astype(jnp.float32)), self.time_first[...].astype(
        jnp.float32)

  def __call__(self, x_BxTxD, *, tokens_BxT=None):
    x = x_BxTxD.astype(self.spec.dtype)
    x_prev = jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    r, k, v = self._rkv(x, x_prev)
    w, u = self._decay_bonus()
    if self.chunk_size:
      wkv = chunked_wkv(k, v, w, u, self.chunk_size).astype(self.spec.dtype)
      return self.output(r * wkv)

    def body(carry, kv_t):
      return wkv_step(carry, kv_t[0], kv_t[1], w, u)[::-1]

    B, _, D = x.shape
    _, wkv_TxBxD = jax.lax.scan(body, wkv_initial_carry(B, D),
                                (jnp.swapaxes(k, 0, 1), jnp.swapaxes(v, 0, 1)))
    wkv = jnp.swapaxes(wkv_TxBxD, 0, 1).astype(self.spec.dtype)
    return self.output(r * wkv)

  def init_state(self, batch_size: int):
    a, b, p = wkv_initial_carry(batch_size, self.spec.d_model)
    return {'x_prev': jnp.zeros((batch_size, self.spec.d_model), self.spec.dtype),
            'num': a, 'den': b, 'max': p}

  def step(self, x_BxD, state, *, token_B=None):
    x = x_BxD.astype(self.spec.dtype)
    r, k, v = self._rkv(x, state['x_prev'].astype(self.spec.dtype))
    w, u = self._decay_bonus()
    wkv, (a, b, p) = wkv_step((state['num'], state['den'], state['max']), k, v, w, u)
    y = self.output(r * wkv.astype(self.spec.dtype))
    return y, {'x_prev': x, 'num': a, 'den': b, 'max': p}

  def state_size(self) -> int:
    return 4 * self.spec.d_model
