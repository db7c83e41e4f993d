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
form is the same recurrence under jax.lax.scan (the projections are done for all positions
at once outside it).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from data.base import require
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


def wkv_initial_carry(batch_size: int, width: int):
  zeros = jnp.zeros((batch_size, width), jnp.float32)
  return (zeros, zeros, jnp.full((batch_size, width), _NEG_BIG, jnp.float32))


@register('rwkv')
class RWKVTimeMix(Mixer):
  """RWKV-4 time-mixing block (per-channel, spec.num_heads unused).

  Options: init_depth_ratio in [0, 1], the layer's relative depth assumed by the RWKV-4
  initialisation of the decay and token-shift mixes (the mixer does not know its layer).
  Step form carries (previous x, a, b, p): 4 * d_model floats.
  """
  default_options = {'init_depth_ratio': 0.5}

  def __init__(self, spec: MixerSpec, options: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    name = getattr(self, 'mixer_name', 'rwkv')
    opts = resolve_options(name, self.default_options, options)
    ratio = opts['init_depth_ratio']
    require(isinstance(ratio, (int, float)) and 0.0 <= ratio <= 1.0,
            f'model.mixer_options.{name}.init_depth_ratio', ratio, 'must lie in [0, 1]')
    self.spec = spec
    d = spec.d_model
    # RWKV-4 initialisation (ratio_0_to_1 = depth, ratio_1_to_almost0 ~ 1 - depth).
    depth, shallow = float(ratio), 1.0 - float(ratio)
    channel = np.arange(d, dtype=np.float64)
    decay_speed = -5.0 + 8.0 * (channel / max(d - 1, 1)) ** (0.7 + 1.3 * depth)
    zigzag = ((channel + 1) % 3 - 1) * 0.5
    frac = channel / d
    as_param = lambda a: nnx.Param(jnp.asarray(a, spec.param_dtype))
    self.time_decay = as_param(decay_speed)           # w = exp(time_decay)
    self.time_first = as_param(np.log(0.3) + zigzag)  # u
    self.mix_k = as_param(frac ** shallow)
    self.mix_v = as_param(frac ** shallow + 0.3 * depth)
    self.mix_r = as_param(frac ** (0.5 * shallow))
    # Default (LeCun-normal) projections: RWKV-4 zero-initialises some of them, which would
    # make a fresh mixer the constant 0.
    common = dict(use_bias=False, dtype=spec.dtype, param_dtype=spec.param_dtype, rngs=rngs)
    self.key = nnx.Linear(d, d, **common)
    self.value = nnx.Linear(d, d, **common)
    self.receptance = nnx.Linear(d, d, **common)
    self.output = nnx.Linear(d, d, **common)

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
