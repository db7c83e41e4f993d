"""Linear attention: Katharopoulos et al. 2020 ("Transformers are RNNs") and the plain linear
self-attention (LSA) of von Oswald et al. 2023 ("Transformers Learn In-Context by Gradient
Descent").

Per head, with a feature map phi applied to queries and keys:
  S_t = S_{t-1} + phi(k_t)^T v_t,   z_t = z_{t-1} + phi(k_t)
  o_t = phi(q_t) S_t / (phi(q_t) . z_t + eps)   (normalize=True)   or   phi(q_t) S_t
The parallel form is the chunked causal kernel of gla.py with no decay; the normaliser is
obtained from the same pass by appending a constant-one channel to v.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from core import require
from models.mixers.attention import head_dim_of, resolve_options
from models.mixers.base import Mixer, MixerSpec, register
from models.mixers.gla import chunked_gated_linear_attention

FEATURE_MAPS = {
    'elu1': lambda x: jax.nn.elu(x) + 1.0,   # the paper's choice: positive, smooth
    'relu': jax.nn.relu,
    'identity': lambda x: x,
}
# Katharopoulos et al. add this to the denominator.
NORMALIZER_EPS = 1e-6


def lsa_kernel_init(init_scale: float, num_layers: int):
  """von Oswald et al.'s projection init: Haiku's VarianceScaling(init_scale / num_layers),
  i.e. a truncated normal (at +-2 sigma, rescaled) with variance init_scale / (num_layers *
  fan_in), so weight std = sqrt(init_scale / (num_layers * fan_in))."""
  return jax.nn.initializers.variance_scaling(init_scale / max(num_layers, 1), 'fan_in',
                                              'truncated_normal')


@register('linear_attention')
class LinearAttention(Mixer):
  """Causal linear attention with Q, K, V and output projections.

  Options: feature_map ('elu1' | 'relu' | 'identity'); normalize (divide by phi(q).sum phi(k),
  only allowed with a non-negative feature map, else the denominator changes sign);
  use_bias (biases of the projections); chunk_size (of the parallel form).
  Step form: S (d_k x d_v) and, when normalising, z (d_k) per head.
  """
  default_options = {'feature_map': 'elu1', 'normalize': True, 'use_bias': True,
                     'chunk_size': 16}
  # A (feature-mapped) sum over the past: orderless, as softmax attention.
  needs_positions = True

  def __init__(self, spec: MixerSpec, options: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    name = getattr(self, 'mixer_name', 'linear_attention')
    opts = resolve_options(name, self.default_options, options)
    key = f'model.mixer_options.{name}.'
    require(opts['feature_map'] in FEATURE_MAPS, key + 'feature_map', opts['feature_map'],
            f'one of {sorted(FEATURE_MAPS)}')
    require(isinstance(opts['normalize'], bool), key + 'normalize', opts['normalize'],
            'must be True or False')
    require(not (opts['normalize'] and opts['feature_map'] == 'identity'), key + 'normalize',
            opts['normalize'], "normalize=True needs a non-negative feature_map ('elu1' or "
            "'relu'); with 'identity' the denominator can cross zero")
    require(isinstance(opts['chunk_size'], int) and opts['chunk_size'] >= 1, key + 'chunk_size',
            opts['chunk_size'], 'must be an integer >= 1')
    self.spec = spec
    self.head_dim = head_dim_of(spec)
    self.feature_map_name = opts['feature_map']
    self.normalize = opts['normalize']
    self.chunk_size = opts['chunk_size']
    d = spec.d_model
    common = dict(use_bias=bool(opts['use_bias']), dtype=spec.dtype,
                  param_dtype=spec.param_dtype, rngs=rngs)
    if 'init_scale' in opts:
      require(isinstance(opts['init_scale'], (int, float)) and opts['init_scale'] > 0,
              key + 'init_scale', opts['init_scale'], 'must be a number > 0')
      common['kernel_init'] = lsa_kernel_init(opts['init_scale'], spec.num_layers)
    self.qkv = nnx.Linear(d, 3 * d, **common)
    self.out = nnx.Linear(d, d, **common)

  def _project(self, x_XxD):
    """phi(q), phi(k), v with heads split: (..., H, head_dim), compute dtype."""
    q, k, v = jnp.split(self.qkv(x_XxD.astype(self.spec.dtype)), 3, axis=-1)
    shape = q.shape[:-1] + (self.spec.num_heads, self.head_dim)
    phi = FEATURE_MAPS[self.feature_map_name]
    return phi(q.reshape(shape)), phi(k.reshape(shape)), v.reshape(shape)

  def _finish(self, numerator_XxHxV, denominator_XxH):
    if self.normalize:
      o = numerator_XxHxV.astype(jnp.float32) / (
          denominator_XxH.astype(jnp.float32)[..., None] + NORMALIZER_EPS)
    else:
      o = numerator_XxHxV
    o = o.astype(self.spec.dtype)
    return self.out(o.reshape(o.shape[:-2] + (self.spec.d_model,)))

  def __call__(self, x_BxTxD, *, tokens_BxT=None):
    q, k, v = self._project(x_BxTxD)
    if self.normalize:
      v = jnp.concatenate([v, jnp.ones(v.shape[:-1] + (1,), v.dtype)], axis=-1)
    to_bhtx = lambda a: jnp.swapaxes(a, 1, 2)
    o, _ = chunked_gated_linear_attention(to_bhtx(q), to_bhtx(k), to_bhtx(v),
                                          chunk_size=self.chunk_size)
    o = to_bhtx(o)
    if self.normalize:
      return self._finish(o[..., :-1], o[..., -1])
    return self._finish(o, None)

  def init_state(self, batch_size: int):
    H, K = self.spec.num_heads, self.head_dim
    state = {'S': jnp.zeros((batch_size, H, K, K), jnp.float32)}
    if self.normalize:
      state['z'] = jnp.zeros((batch_size, H, K), jnp.float32)
    return state

  def step(self, x_BxD, state, *, token_B=None):
    q, k, v = self._project(x_BxD)
    q32, k32 = q.astype(jnp.float32), k.astype(jnp.float32)
    S = state['S'] + jnp.einsum('bhk,bhv->bhkv', k32, v.astype(jnp.float32))
    numerator = jnp.einsum('bhk,bhkv->bhv', q32, S)
    if not self.normalize:
      return self._finish(numerator, None), {'S': S}
    z = state['z'] + k32
    return self._finish(numerator, jnp.einsum('bhk,bhk->bh', q32, z)), {'S': S, 'z': z}

  def state_size(self) -> int:
    H, K = self.spec.num_heads, self.head_dim
    return H * K * K + (H * K if self.normalize else 0)


@register('linear_self_attention')
class LinearSelfAttention(LinearAttention):
  """von Oswald et al.'s causal linear self-attention (LSA):
  y_t = sum_h P_h sum_{j<=t} (V_h x_j)(K_h x_j)^T (Q_h x_t),
  i.e. linear attention with no feature map, no normalisation, no softmax and no biases.

  Option init_scale: the Q, K, V and output projections are initialised as in the paper's
  code, variance scaling (fan-in, truncated normal) with scale init_scale / num_layers
  (their w_init_scale = 0.002). The default LeCun init makes the cubic product
  sum_j (V x_j)(K x_j)^T (Q x_t) of order T at the first layer and the residual stream of a
  fresh multi-layer model explode; at this scale each layer starts close to the identity.
  """
  default_options = {'feature_map': 'identity', 'normalize': False, 'use_bias': False,
                     'chunk_size': 16, 'init_scale': 0.002}
