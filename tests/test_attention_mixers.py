"""Attention-family mixers against independent numpy implementations of their papers' formulas.

The generic properties (causality, step == parallel, state size, bf16) are in test_mixers.py;
here each mixer's parallel form is compared with a direct float64 numpy transcription.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from data.base import ConfigError
from models.mixers import MIXERS, MixerSpec
from models.mixers.attention import alibi_slopes, apply_rope, rope_angles
from models.mixers.gla import chunked_gated_linear_attention
from models.mixers.rwkv import wkv_initial_carry, wkv_step

D, H, T, B = 16, 2, 11, 2


def make(name, position='none', max_len=T, d_model=D, num_heads=H, **options):
  cls = MIXERS[name]
  spec = MixerSpec(d_model=d_model, num_heads=num_heads, max_len=max_len, position=position)
  opts = dict(cls.default_options)
  opts.update(options)
  return cls(spec, ml_collections.ConfigDict(opts), rngs=nnx.Rngs(0))


def inputs(seed=1, shape=(B, T, D)):
  return np.asarray(jax.random.normal(jax.random.key(seed), shape), np.float64)


@nnx.jit
def _apply(mixer, x):
  return mixer(x)


def apply(mixer, x):
  """The mixer's parallel form on float32 x, compiled once (faster than op-by-op dispatch)."""
  return _apply(mixer, x)


def arr(param):
  return np.asarray(param[...], np.float64)


def linear(layer, x):
  y = x @ arr(layer.kernel)
  return y + arr(layer.bias) if layer.bias is not None else y


def heads(a, num_heads=H):
  return a.reshape(a.shape[:-1] + (num_heads, -1))


def np_rotate(x_BxTxHxK, base=10000.0):
  """Rotary positions as complex multiplication: pair (x[2i], x[2i+1]) -> z e^{i t theta_i}."""
  K = x_BxTxHxK.shape[-1]
  theta = base ** (-2.0 * np.arange(K // 2) / K)
  t = np.arange(x_BxTxHxK.shape[1])
  z = (x_BxTxHxK[..., 0::2] + 1j * x_BxTxHxK[..., 1::2]) * np.exp(
      1j * t[:, None, None] * theta)[None]
  out = np.empty_like(x_BxTxHxK)
  out[..., 0::2], out[..., 1::2] = z.real, z.imag
  return out


def np_group_norm(o_BxTxHxV, norm):
  mean = o_BxTxHxV.mean(-1, keepdims=True)
  var = o_BxTxHxV.var(-1, keepdims=True)
  return (o_BxTxHxV - mean) / np.sqrt(var + norm.eps) * arr(norm.scale) + arr(norm.bias)


def swish(x):
  return x / (1 + np.exp(-x))


# -- softmax attention ------------------------------------------------------------------------

def np_attention_heads(mixer, x, position):
  """Causal softmax attention by the textbook formula; returns (per-head outputs, v)."""
  q, k, v = np.split(linear(mixer.qkv, x), 3, axis=-1)
  q, k, v = heads(q), heads(k), heads(v)
  if position == 'rope':
    q, k = np_rotate(q), np_rotate(k)
  logits = np.einsum('bthk,bshk->bhts', q, k) / np.sqrt(q.shape[-1])
  t = np.arange(x.shape[1])
  if position == 'alibi':
    # Press et al.: head slopes 2^(-8h/n), h = 1..n, for n a power of two.
    slopes = 2.0 ** (-8.0 * np.arange(1, H + 1) / H)
    logits = logits - slopes[:, None, None] * (t[:, None] - t[None, :])
  logits = np.where(t[:, None] >= t[None, :], logits, -np.inf)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  return np.einsum('bhts,bshk->bthk', probs, v), v


@pytest.mark.parametrize('position', ['none', 'learned', 'rope', 'alibi'])
def test_attention_matches_numpy(position):
  mixer = make('attention', position=position)
  x = inputs()
  attended, _ = np_attention_heads(mixer, x, position)
  expected = linear(mixer.out, attended.reshape(B, T, D))
  np.testing.assert_allclose(apply(mixer, x), expected, atol=1e-5, rtol=1e-4)


def test_rope_is_a_rotation_with_relative_scores():
  key_q, key_k = jax.random.split(jax.random.key(3))
  q = jax.random.normal(key_q, (1, 1, 1, 8))
  k = jax.random.normal(key_k, (1, 1, 1, 8))
  rope_at = lambda x, pos: apply_rope(x, rope_angles(jnp.array([pos]), 8))
  for pos in (0, 3, 17):
    np.testing.assert_allclose(jnp.linalg.norm(rope_at(q, pos)), jnp.linalg.norm(q), rtol=1e-5)
  score = lambda m, n: float(jnp.sum(rope_at(q, m) * rope_at(k, n)))
  np.testing.assert_allclose(score(5, 2), score(12, 9), rtol=1e-4)
  np.testing.assert_allclose(score(2, 5), score(30, 33), rtol=1e-4)
  assert abs(score(5, 2) - score(5, 4)) > 1e-3   # and the offset does matter


def test_alibi_slopes_formula():
  for n in (1, 2, 4, 8, 16):
    np.testing.assert_allclose(alibi_slopes(n), 2.0 ** (-8.0 * np.arange(1, n + 1) / n))
  # Not a power of two: the 4 slopes of n=4, then the odd-indexed-from-1 slopes of n=8.
  np.testing.assert_allclose(alibi_slopes(6), 2.0 ** -np.array([2., 4., 6., 8., 1., 3.]))


def test_momentum_attention_matches_numpy():
  eta = 0.7
  mixer = make('momentum_attention', position='rope', eta=eta)
  x = inputs()
  attended, v = np_attention_heads(mixer, x, 'rope')
  # Dai et al.: MoAttn(q_t) = Attn(q_t) + sum_{i=1}^{t-1} eta^(t-i) v_i
  momentum = np.zeros_like(v)
  for t in range(T):
    for i in range(t):
      momentum[:, t] += eta ** (t - i) * v[:, i]
  expected = linear(mixer.out, (attended + momentum).reshape(B, T, D))
  np.testing.assert_allclose(apply(mixer, x), expected, atol=1e-4, rtol=1e-4)


# -- linear attention ---------------------------------------------------------------------------

@pytest.mark.parametrize('feature_map,normalize', [('elu1', True), ('relu', True),
                                                    ('identity', False), ('elu1', False)])
def test_linear_attention_matches_recurrence(feature_map, normalize):
  # chunk_size 4 with T = 11: several chunks and a padded last one.
  mixer = make('linear_attention', feature_map=feature_map, normalize=normalize, chunk_size=4)
  x = inputs()
  phi = {'elu1': lambda a: np.where(a > 0, a + 1, np.exp(a)),
         'relu': lambda a: np.maximum(a, 0), 'identity': lambda a: a}[feature_map]
  q, k, v = np.split(linear(mixer.qkv, x), 3, axis=-1)
  q, k, v = phi(heads(q)), phi(heads(k)), heads(v)
  out = np.zeros_like(v)
  S = np.zeros((B, H, D // H, D // H))
  z = np.zeros((B, H, D // H))
  for t in range(T):
    S += np.einsum('bhk,bhv->bhkv', k[:, t], v[:, t])
    z += k[:, t]
    out[:, t] = np.einsum('bhk,bhkv->bhv', q[:, t], S)
    if normalize:
      out[:, t] /= np.einsum('bhk,bhk->bh', q[:, t], z)[..., None] + 1e-6
  expected = linear(mixer.out, out.reshape(B, T, D))
  np.testing.assert_allclose(apply(mixer, x), expected, atol=1e-4, rtol=1e-4)


def test_lsa_is_von_oswald_closed_form():
  mixer = make('linear_self_attention')
  assert mixer.qkv.bias is None and mixer.out.bias is None
  x = inputs()
  Wq, Wk, Wv = np.split(arr(mixer.qkv.kernel), 3, axis=-1)
  Wp = arr(mixer.out.kernel)
  hd = D // H
  mask = np.triu(np.ones((T, T)))                  # [j, t] = 1 for j <= t
  expected = np.zeros((B, T, D))
  for h in range(H):
    cols = slice(h * hd, (h + 1) * hd)
    for b in range(B):
      X = x[b].T                                   # D x T, columns are tokens e_j
      Q, K, V = Wq[:, cols].T @ X, Wk[:, cols].T @ X, Wv[:, cols].T @ X
      # sum_{j<=t} (V e_j)(K e_j)^T (Q e_t) for all t at once, then P_h.
      delta = V @ ((K.T @ Q) * mask)               # hd x T
      expected[b] += (Wp[cols].T @ delta).T
  np.testing.assert_allclose(apply(mixer, x), expected, atol=1e-4, rtol=1e-4)


# -- gated recurrences: the shared chunked kernel -------------------------------------------

def np_gated_recurrence(q, k, v, log_gate):
  Bq, Hq, Tq, K = q.shape
  S = np.zeros((Bq, Hq, K, v.shape[-1]))
  out = np.zeros(v.shape)
  for t in range(Tq):
    decay = np.exp(log_gate[:, :, t])
    decay = decay[..., None] if log_gate.ndim == 4 else decay[..., None, None]
    S = decay * S + np.einsum('bhk,bhv->bhkv', k[:, :, t], v[:, :, t])
    out[:, :, t] = np.einsum('bhk,bhkv->bhv', q[:, :, t], S)
  return out


@pytest.mark.parametrize('per_channel', [True, False])
@pytest.mark.parametrize('strength', ['mild', 'strong'])
def test_chunked_kernel_matches_recurrence(per_channel, strength):
  seq = 256 if strength == 'strong' else 37
  rng = np.random.default_rng(0)
  q, k = rng.normal(size=(2, 1, 2, seq, 4))
  v = rng.normal(size=(1, 2, seq, 3))
  gate_shape = (1, 2, seq, 4) if per_channel else (1, 2, seq)
  low = -30.0 if strength == 'strong' else -0.3   # strong: cumulative log-decay ~ -4000
  log_gate = rng.uniform(low, 0.0, size=gate_shape)
  if strength == 'strong':   # mix in near-1 gates so long memories exist too
    log_gate = np.where(rng.random(gate_shape) < 0.5, log_gate * 1e-3, log_gate)
  kernel = jax.jit(lambda *a: chunked_gated_linear_attention(*a, chunk_size=8)[0])
  args = [jnp.asarray(a, jnp.float32) for a in (q, k, v, log_gate)]
  o = kernel(*args)
  assert bool(jnp.all(jnp.isfinite(o)))
  np.testing.assert_allclose(o, np_gated_recurrence(q, k, v, log_gate), atol=2e-4, rtol=2e-4)
  if strength == 'strong':   # gradients stay finite: masked exponents must not leak inf * 0
    grads = jax.jit(jax.grad(lambda *a: kernel(*a).sum(), argnums=(0, 1, 3)))(*args)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_gla_layer_matches_numpy_recurrence_under_strong_gates():
  seq = 40
  mixer = make('gla', max_len=seq, chunk_size=16)
  # Push the forget gates towards 0 for half the key channels: log alpha ~ -6 per step.
  bias = np.zeros(mixer.gate_up.bias.shape, np.float32)
  bias[::2] = -100.0
  mixer.gate_up.bias[...] = jnp.asarray(bias)
  mixer.norm.scale[...] = jnp.asarray(
      np.random.default_rng(1).normal(size=mixer.norm.scale.shape), jnp.float32)
  x = inputs(shape=(B, seq, D))
  dk, dv = mixer.key_dim, mixer.value_dim
  q = heads(linear(mixer.q_proj, x)) / np.sqrt(dk)
  k, v = heads(linear(mixer.k_proj, x)), heads(linear(mixer.v_proj, x))
  # Yang et al.: alpha = sigmoid(x W1 W2 + b)^(1/16)
  log_alpha = heads(-np.logaddexp(0, -linear(mixer.gate_up, linear(mixer.gate_down, x))) / 16.0)
  o = np_gated_recurrence(*(a.transpose(0, 2, 1, 3) for a in (q, k, v, log_alpha)))
  o = o.transpose(0, 2, 1, 3)
  y = np_group_norm(o, mixer.norm).reshape(B, seq, H * dv) * swish(linear(mixer.out_gate, x))
  got = apply(mixer, x)
  assert bool(jnp.all(jnp.isfinite(got)))
  np.testing.assert_allclose(got, linear(mixer.out, y), atol=2e-4, rtol=2e-4)


def test_retention_matches_paper_parallel_form():
  mixer = make('retention', chunk_size=4)
  mixer.norm.bias[...] = jnp.asarray(
      np.random.default_rng(2).normal(size=mixer.norm.bias.shape), jnp.float32)
  x = inputs()
  dk = D // H
  q = np_rotate(heads(linear(mixer.q_proj, x)))
  k = np_rotate(heads(linear(mixer.k_proj, x))) / np.sqrt(dk)
  v = heads(linear(mixer.v_proj, x))
  gamma = 1.0 - 2.0 ** (-5.0 - np.arange(H))
  n = np.arange(T)
  D_HxTxT = np.where(n[:, None] >= n[None, :],
                     gamma[:, None, None] ** np.maximum(n[:, None] - n[None, :], 0), 0.0)
  o = np.einsum('bnhk,bmhk,hnm,bmhv->bnhv', q, k, D_HxTxT, v)
  y = np_group_norm(o, mixer.norm).reshape(B, T, -1) * swish(linear(mixer.g_proj, x))
  np.testing.assert_allclose(apply(mixer, x), linear(mixer.out, y),
                             atol=2e-4, rtol=2e-4)


# -- RWKV -------------------------------------------------------------------------------------

def np_wkv(k, v, w, u):
  """The WKV formula summed directly (no max trick), float64."""
  out = np.zeros_like(v)
  for t in range(k.shape[1]):
    num = np.exp(u + k[:, t]) * v[:, t]
    den = np.exp(u + k[:, t])
    for i in range(t):
      weight = np.exp(-(t - 1 - i) * w + k[:, i])
      num, den = num + weight * v[:, i], den + weight
    out[:, t] = num / den
  return out


def test_rwkv_matches_direct_wkv_formula():
  mixer = make('rwkv', zero_init=False)   # RWKV-4's zero key/output would test nothing
  x = inputs()
  x_prev = np.concatenate([np.zeros((B, 1, D)), x[:, :-1]], axis=1)
  mix = lambda m: x * arr(m) + x_prev * (1 - arr(m))
  r = 1 / (1 + np.exp(-linear(mixer.receptance, mix(mixer.mix_r))))
  k, v = linear(mixer.key, mix(mixer.mix_k)), linear(mixer.value, mix(mixer.mix_v))
  wkv = np_wkv(k, v, np.exp(arr(mixer.time_decay)), arr(mixer.time_first))
  expected = linear(mixer.output, r * wkv)
  np.testing.assert_allclose(apply(mixer, x), expected, atol=1e-4, rtol=1e-4)


def test_wkv_max_trick_survives_exponents_beyond_float32():
  # k up to +-150: e^150 overflows float32, so the direct formula is only possible in float64.
  rng = np.random.default_rng(3)
  k = rng.uniform(-150, 150, size=(1, 9, 5))
  v = rng.normal(size=(1, 9, 5))
  w, u = rng.uniform(0.01, 3.0, size=5), rng.normal(size=5)
  carry = wkv_initial_carry(1, 5)
  outs = []
  for t in range(9):
    out, carry = wkv_step(carry, jnp.float32(k[:, t]), jnp.float32(v[:, t]), jnp.float32(w),
                          jnp.float32(u))
    outs.append(out)
  np.testing.assert_allclose(jnp.stack(outs, 1), np_wkv(k, v, w, u), atol=1e-5, rtol=1e-4)


# -- configuration errors -----------------------------------------------------------------------

@pytest.mark.parametrize('name,options,position', [
    ('momentum_attention', {'eta': 1.5}, 'none'),
    ('linear_attention', {'feature_map': 'softplus'}, 'none'),
    ('linear_attention', {'feature_map': 'identity', 'normalize': True}, 'none'),
    ('gla', {'expand_k': 0.3}, 'none'),
    ('retention', {'no_such_option': 1}, 'none'),
    ('attention', {}, 'sinusoidal'),
])
def test_bad_config_raises_one_line_error(name, options, position):
  with pytest.raises(ConfigError) as error:
    make(name, position=position, **options)
  message = str(error.value)
  assert '\n' not in message and message.startswith('config.')


def test_heads_must_divide_width():
  with pytest.raises(ConfigError, match='num_heads'):
    make('attention', num_heads=3)
