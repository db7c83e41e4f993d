"""The Hyena operator as a sequence mixer (Poli et al. 2023, "Hyena Hierarchy: Towards Larger
Convolutional Language Models", Section 3, Algorithms 1-3).

For order N (default 2):
  [x_0, ..., x_{N-1}, v] = short_conv(in_proj(u))    (N+1 streams of D channels; causal
                                                       depthwise conv with 3 taps)
  for i = 1 .. N-1:   v = h_i * (x_{N-i} ⊙ v) + b_i ⊙ (x_{N-i} ⊙ v)   (long causal conv, FFT)
  y = out_proj(x_0 ⊙ v)

The long filters are implicit: h(t) = FFN(PE(t)) ⊙ window(t), where PE(t) = [t, cos, sin of
(pos_emb_dim-1)/2 frequencies], the FFN is Linear-Sin-(Linear-Sin)x2-Linear with one shared
learnable sine frequency, and window(t) = exp(-α_c t) with α_c spread over channels from
fast to slow decay. Filters are evaluated at spec.max_len positions, t normalised to [0, 1]
over max_len, so a prefix of length T uses the first T taps of the same filter.

The step form is the exact recurrent equivalent of the causal convolutions: it keeps the
last max_len inputs of each long convolution and the short conv's last 2 inputs. Like a
KV cache, its state grows with the context (here it is allocated at max_len up front), so
state_size() = (order - 1) * max_len * D + (short_filter_size - 1) * (order + 1) * D.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from core import require
from models.mixers.base import Mixer, MixerSpec, register
from models.mixers import scan_utils as su

NAME = 'hyena'
# Exponential-window constants of the reference implementation: the fastest channel decays
# to DECAY_TARGET at 30% of the context, the slowest at 150%.
FAST_DECAY_PCT, SLOW_DECAY_PCT, DECAY_TARGET = 0.3, 1.5, 1e-2
NUM_INNER_FILTER_LAYERS = 2


def positional_embedding(max_len: int, emb_dim: int):
  """(z_LxE, t_L): t = linspace(0, 1, L) and z = [t, Re, Im of exp(-i f_k 2π l / L)] for
  (emb_dim - 1) // 2 frequencies f_k spread over [1e-4, bands - 1]."""
  t_L = jnp.linspace(0.0, 1.0, max_len, dtype=jnp.float32)
  bands = (emb_dim - 1) // 2
  angle_L = 2 * math.pi * jnp.arange(max_len, dtype=jnp.float32) / max_len
  freqs_K = jnp.linspace(1e-4, bands - 1, bands, dtype=jnp.float32)
  phase_LxK = angle_L[:, None] * freqs_K[None, :]
  z_LxE = jnp.concatenate([t_L[:, None], jnp.cos(phase_LxK), -jnp.sin(phase_LxK)], axis=-1)
  return z_LxE, t_L


def decay_rates(num_channels: int):
  """α_C > 0: the exponential window's decay rate per channel, fast to slow."""
  slowest = math.log(DECAY_TARGET) / SLOW_DECAY_PCT
  fastest = math.log(DECAY_TARGET) / FAST_DECAY_PCT
  return jnp.abs(jnp.linspace(slowest, fastest, num_channels, dtype=jnp.float32))


class _TorchLinear(nnx.Module):
  """Float32 dense layer with PyTorch's default init (the filter FFN's reference init)."""

  def __init__(self, fan_in: int, fan_out: int, use_bias: bool, rngs: nnx.Rngs):
    self.kernel = nnx.Param(su.torch_default_uniform(rngs.params(), (fan_in, fan_out), fan_in))
    self.bias = (nnx.Param(su.torch_default_uniform(rngs.params(), (fan_out,), fan_in))
                 if use_bias else None)

  def __call__(self, x):
    y = x @ self.kernel[...]
    return y if self.bias is None else y + self.bias[...]


@register(NAME)
class Hyena(Mixer):
  """Hyena operator. Options: order (>= 2), filter_order (width of the filter FFN),
  pos_emb_dim (odd, >= 3), short_filter_size (taps of the short conv), sine_freq (initial
  frequency of the FFN's sine activation)."""
  # Defaults of the paper's associative-recall runs (filter width 64, 5-dim embedding, sine 10).
  default_options = dict(order=2, filter_order=64, pos_emb_dim=5, short_filter_size=3,
                         sine_freq=10.0)

  def __init__(self, spec: MixerSpec, options, *, rngs: nnx.Rngs):
    defaults = self.default_options
    su.check_known(options, defaults, NAME)
    self.spec = spec
    d_model = spec.d_model
    self.order = su.positive_int(options, defaults, NAME, 'order', minimum=2)
    width = su.positive_int(options, defaults, NAME, 'filter_order')
    self.pos_emb_dim = su.positive_int(options, defaults, NAME, 'pos_emb_dim', minimum=3)
    require(self.pos_emb_dim % 2 == 1, su.option_key(NAME, 'pos_emb_dim'), self.pos_emb_dim,
            'an odd integer >= 3 (time plus cosine/sine pairs)')
    self.short_size = su.positive_int(options, defaults, NAME, 'short_filter_size')
    sine_freq = su.positive_float(options, defaults, NAME, 'sine_freq')
    self.num_long = self.order - 1
    streams = (self.order + 1) * d_model
    linear = dict(dtype=spec.dtype, param_dtype=spec.param_dtype, rngs=rngs)

    self.in_proj = nnx.Linear(d_model, streams, **linear)
    self.short_kernel = nnx.Param(su.torch_default_uniform(
        rngs.params(), (self.short_size, streams), fan_in=self.short_size))
    self.short_bias = nnx.Param(su.torch_default_uniform(rngs.params(), (streams,),
                                                         fan_in=self.short_size))
    # Implicit filter FFN: PE(t) -> width -> ... -> (order - 1) * D channels.
    self.filter_in = _TorchLinear(self.pos_emb_dim, width, True, rngs)
    self.filter_inner = nnx.List([_TorchLinear(width, width, True, rngs)
                                  for _ in range(NUM_INNER_FILTER_LAYERS)])
    self.filter_out = _TorchLinear(width, self.num_long * d_model, False, rngs)
    # One sine frequency vector shared by every activation of the FFN, as in the reference.
    self.sine_freq = nnx.Param(jnp.full((width,), sine_freq, jnp.float32))
    # Per-channel skip of each long convolution (the reference filter's "bias").
    self.filter_bias = nnx.Param(jax.random.normal(rngs.params(), (self.num_long, d_model),
                                                   jnp.float32))
    self.out_proj = nnx.Linear(d_model, d_model, **linear)

  # -- implicit filters ---------------------------------------------------------------------

  def long_filters(self):
    """h_OxLxD (float32): the order-1 long filters at all max_len positions."""
    z_LxE, t_L = positional_embedding(self.spec.max_len, self.pos_emb_dim)
    freq = self.sine_freq[...]
    h = jnp.sin(freq * self.filter_in(z_LxE))
    for layer in self.filter_inner:
      h = jnp.sin(freq * layer(h))
    h_LxOD = self.filter_out(h)
    window_LxOD = jnp.exp(-t_L[:, None] * decay_rates(h_LxOD.shape[-1])[None, :])
    h_LxOD = h_LxOD * window_LxOD
    return h_LxOD.reshape(self.spec.max_len, self.num_long, self.spec.d_model).swapaxes(0, 1)

  def _streams(self, uc):
    """Splits the short-conv output (..., (order+1) D) into gates [x_0..x_{order-1}] and v."""
    parts = jnp.split(uc, self.order + 1, axis=-1)
    return parts[:-1], parts[-1]

  # -- parallel form ------------------------------------------------------------------------

  def __call__(self, x_BxTxD, *, tokens_BxT=None):
    """Causal Hyena mixing of x_BxTxD (T <= spec.max_len); returns y_BxTxD in spec.dtype."""
    seq_len = x_BxTxD.shape[1]
    if seq_len > self.spec.max_len:
      raise ValueError(f'hyena: sequence length {seq_len} exceeds max_len '
                       f'{self.spec.max_len}, the length its filters were built for')
    dtype = self.spec.dtype
    u = self.in_proj(x_BxTxD.astype(dtype))
    uc = su.causal_depthwise_conv(u, self.short_kernel[...], self.short_bias[...])
    gates, v = self._streams(uc)
    h_OxLxD = self.long_filters()
    bias_OxD = self.filter_bias[...]
    v = v.astype(jnp.float32)
    for i, gate in enumerate(reversed(gates[1:])):
      v = v * gate.astype(jnp.float32)
      v = su.fft_causal_conv(v, h_OxLxD[i, :seq_len]) + bias_OxD[i] * v
    y = (v * gates[0].astype(jnp.float32)).astype(dtype)
    return self.out_proj(y)

  # -- step form ----------------------------------------------------------------------------

  def init_state(self, batch_size: int):
    """Zeros: the short conv's last inputs and the last max_len inputs of each long conv
    (oldest first). Grows with the context like a KV cache; allocated at max_len."""
    d_model, streams = self.spec.d_model, (self.order + 1) * self.spec.d_model
    return dict(
        short_window_BxSm1xC=jnp.zeros((batch_size, self.short_size - 1, streams), jnp.float32),
        history_OxBxLxD=jnp.zeros((self.num_long, batch_size, self.spec.max_len, d_model),
                                  jnp.float32))

  def step(self, x_BxD, state, *, token_B=None):
    """One position; equals `__call__` for the first max_len positions. After that the oldest
    input drops out, i.e. the filters act as if truncated to max_len taps."""
    dtype = self.spec.dtype
    u = self.in_proj(x_BxD.astype(dtype))
    uc, short_window = su.causal_depthwise_conv_step(
        state['short_window_BxSm1xC'], u, self.short_kernel[...], self.short_bias[...])
    gates, v = self._streams(uc)
    # history[l] holds the input l - (L-1) steps back, so it meets filter tap L-1-l
    h_rev_OxLxD = self.long_filters()[:, ::-1]
    bias_OxD = self.filter_bias[...]
    v = v.astype(jnp.float32)
    histories = []
    for i, gate in enumerate(reversed(gates[1:])):
      v = v * gate.astype(jnp.float32)
      history_BxLxD = jnp.concatenate([state['history_OxBxLxD'][i, :, 1:], v[:, None]], axis=1)
      v = jnp.einsum('bld,ld->bd', history_BxLxD, h_rev_OxLxD[i]) + bias_OxD[i] * v
      histories.append(history_BxLxD)
    y = self.out_proj((v * gates[0].astype(jnp.float32)).astype(dtype))
    return y, dict(short_window_BxSm1xC=short_window, history_OxBxLxD=jnp.stack(histories))

  def state_size(self) -> int:
    d_model = self.spec.d_model
    return (self.num_long * self.spec.max_len * d_model
            + (self.short_size - 1) * (self.order + 1) * d_model)
