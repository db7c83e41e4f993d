"""Mamba, S4D, Hyena, LSTM and GRU mixers against independent float64 numpy implementations
that use the same weights (sequential loops and direct O(T^2) convolutions, no FFT, no scan)."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from data.base import ConfigError
from models.mixers import MIXERS, MixerSpec
from models.mixers import scan_utils

D_MODEL, T, B = 8, 10, 2
RTOL, ATOL = 1e-4, 1e-4


def make(name, max_len=T, dtype=jnp.float32, seed=0, **overrides):
  cls = MIXERS[name]
  options = ml_collections.ConfigDict({**cls.default_options, **overrides})
  spec = MixerSpec(d_model=D_MODEL, num_heads=2, max_len=max_len, position='none', dtype=dtype)
  return cls(spec, options, rngs=nnx.Rngs(seed))


def inputs(seq_len=T, seed=1):
  return jax.random.normal(jax.random.key(seed), (B, seq_len, D_MODEL))


def to_np(array_or_param):
  value = array_or_param[...] if hasattr(array_or_param, 'get_value') else array_or_param
  return np.asarray(value, dtype=np.float64)


# Jitted once per mixer configuration: one compilation is much cheaper than compiling every
# op eagerly (test_mixers.py covers the eager path).
forward = nnx.jit(lambda mixer, x_BxTxD: mixer(x_BxTxD))
_step = nnx.jit(lambda mixer, x_BxD, state: mixer.step(x_BxD, state))


def run_steps(mixer, x_BxTxD):
  state = mixer.init_state(x_BxTxD.shape[0])
  outs = []
  for t in range(x_BxTxD.shape[1]):
    y_t, state = _step(mixer, x_BxTxD[:, t], state)
    outs.append(y_t)
  return jnp.stack(outs, axis=1)


# ---- numpy references -------------------------------------------------------------------------

def np_sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def np_silu(x):
  return x * np_sigmoid(x)


def np_softplus(x):
  return np.log1p(np.exp(x))


def np_gelu(x):
  return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def np_linear(layer, x):
  y = x @ to_np(layer.kernel)
  return y if layer.bias is None else y + to_np(layer.bias)


def np_causal_conv(x_BxTxC, kernel_KxC, bias_C):
  """y[t] = bias + sum_k kernel[k] x[t-(K-1)+k] by an explicit loop."""
  num_taps = kernel_KxC.shape[0]
  y = np.zeros_like(x_BxTxC)
  for t in range(x_BxTxC.shape[1]):
    y[:, t] = bias_C
    for k in range(num_taps):
      src = t - (num_taps - 1) + k
      if src >= 0:
        y[:, t] += kernel_KxC[k] * x_BxTxC[:, src]
  return y


def np_direct_conv(u_BxTxC, k_TxC):
  """y[t] = sum_{j<=t} k[j] u[t-j]: the O(T^2) causal convolution."""
  y = np.zeros_like(u_BxTxC)
  for t in range(u_BxTxC.shape[1]):
    for j in range(t + 1):
      y[:, t] += k_TxC[j] * u_BxTxC[:, t - j]
  return y


# ---- scan utilities ---------------------------------------------------------------------------

def test_linear_scan_matches_loop():
  rng = np.random.default_rng(0)
  a = rng.uniform(0.2, 1.0, (B, 13, 3))
  b = rng.normal(size=(B, 13, 3))
  h = np.zeros((B, 3))
  expected = []
  for t in range(13):
    h = a[:, t] * h + b[:, t]
    expected.append(h)
  got = jax.jit(scan_utils.linear_scan)(jnp.asarray(a, jnp.float32),
                                        jnp.asarray(b, jnp.float32))
  np.testing.assert_allclose(got, np.stack(expected, 1), rtol=1e-5, atol=1e-5)


def test_fft_causal_conv_matches_direct_convolution():
  rng = np.random.default_rng(1)
  u = rng.normal(size=(B, 11, 3))
  k = rng.normal(size=(11, 3))
  got = jax.jit(scan_utils.fft_causal_conv)(jnp.asarray(u, jnp.float32),
                                            jnp.asarray(k, jnp.float32))
  np.testing.assert_allclose(got, np_direct_conv(u, k), rtol=1e-4, atol=1e-4)


# ---- Mamba ------------------------------------------------------------------------------------

def np_mamba(m, x):
  """Mamba block with m's weights, the selective recurrence run as a sequential loop."""
  inner, n, rank = m.d_inner, m.state_dim, m.dt_rank
  xz = x @ to_np(m.in_proj.kernel)
  xs, z = xz[..., :inner], xz[..., inner:]
  xs = np_silu(np_causal_conv(xs, to_np(m.conv_kernel), to_np(m.conv_bias)))
  proj = xs @ to_np(m.x_proj.kernel)
  dt = np_softplus(proj[..., :rank] @ to_np(m.dt_kernel) + to_np(m.dt_bias))
  b_in, c_out = proj[..., rank:rank + n], proj[..., rank + n:]
  A = -np.exp(to_np(m.A_log))
  h = np.zeros((x.shape[0], inner, n))
  ys = []
  for t in range(x.shape[1]):
    h = np.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * xs[:, t])[..., None] * b_in[:, t, None]
    ys.append((h * c_out[:, t, None]).sum(-1) + to_np(m.D) * xs[:, t])
  y = np.stack(ys, 1) * np_silu(z)
  return y @ to_np(m.out_proj.kernel)


@pytest.mark.parametrize('overrides', [{}, dict(state_dim=4, expand=1, d_conv=2, dt_rank=3)])
def test_mamba_matches_sequential_numpy(overrides):
  m = make('mamba', **overrides)
  x = inputs()
  y = forward(m, x)
  np.testing.assert_allclose(y, np_mamba(m, to_np(x)), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(run_steps(m, x), y, rtol=RTOL, atol=ATOL)


def test_mamba_init_follows_paper():
  m = make('mamba', dt_min=0.01, dt_max=0.05)
  A = -np.exp(to_np(m.A_log))
  np.testing.assert_allclose(A, -np.tile(np.arange(1, m.state_dim + 1), (m.d_inner, 1)),
                             rtol=1e-6)
  dt0 = np_softplus(to_np(m.dt_bias))
  assert np.all(dt0 >= 0.01 * (1 - 1e-4)) and np.all(dt0 <= 0.05 * (1 + 1e-4))
  assert m.dt_rank == math.ceil(D_MODEL / 16)
  np.testing.assert_allclose(to_np(m.D), 1.0)


# ---- S4D --------------------------------------------------------------------------------------

def np_s4d_recurrence(m, u):
  """The ZOH-discretised diagonal SSM run step by step in complex128, from raw parameters."""
  A = -np.exp(to_np(m.log_A_real)) + 1j * to_np(m.A_imag)
  dt = np.exp(to_np(m.log_dt))[:, None]
  A_bar = np.exp(dt * A)
  B_bar = (A_bar - 1.0) / A
  C = to_np(m.C)[..., 0] + 1j * to_np(m.C)[..., 1]
  h = np.zeros((u.shape[0],) + A.shape, np.complex128)
  ys = []
  for t in range(u.shape[1]):
    h = A_bar * h + B_bar * u[:, t, :, None]
    ys.append(2.0 * (C * h).sum(-1).real + to_np(m.D) * u[:, t])
  return np.stack(ys, 1)


def test_s4d_fft_matches_direct_convolution_and_recurrence():
  m = make('s4d', state_dim=8)
  u = inputs()
  y_fft, kernel = nnx.jit(lambda m, u: (m.ssm(u), m.kernel(T)))(m, u)
  kernel = to_np(kernel)
  y_direct = np_direct_conv(to_np(u), kernel) + to_np(m.D) * to_np(u)
  y_recurrent = np_s4d_recurrence(m, to_np(u))
  np.testing.assert_allclose(y_fft, y_direct, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(y_fft, y_recurrent, rtol=RTOL, atol=ATOL)
  # the whole layer: GELU, then Linear to 2D and GLU
  a_b = np_linear(m.output_linear, np_gelu(y_recurrent))
  expected = a_b[..., :D_MODEL] * np_sigmoid(a_b[..., D_MODEL:])
  np.testing.assert_allclose(forward(m, u), expected, rtol=RTOL, atol=ATOL)


def test_s4d_lin_init():
  m = make('s4d', state_dim=6, dt_min=0.002, dt_max=0.02)
  A = -np.exp(to_np(m.log_A_real)) + 1j * to_np(m.A_imag)
  np.testing.assert_allclose(A, np.tile(-0.5 + 1j * np.pi * np.arange(3), (D_MODEL, 1)),
                             rtol=1e-6, atol=1e-6)
  dt = np.exp(to_np(m.log_dt))
  assert np.all(dt >= 0.002 * (1 - 1e-5)) and np.all(dt <= 0.02 * (1 + 1e-5))
  assert m.state_size() == D_MODEL * 6


# ---- Hyena ------------------------------------------------------------------------------------

def np_hyena_filters(m):
  """Implicit filters h (order-1, max_len, D) re-derived in numpy from the paper's recipe."""
  max_len, emb_dim = m.spec.max_len, m.pos_emb_dim
  t = np.linspace(0.0, 1.0, max_len)
  bands = (emb_dim - 1) // 2
  z = np.exp(-1j * np.linspace(1e-4, bands - 1, bands)[None] *
             (2 * np.pi * np.arange(max_len) / max_len)[:, None])
  feats = np.concatenate([t[:, None], z.real, z.imag], axis=-1)
  freq = to_np(m.sine_freq)
  h = np.sin(freq * np_linear(m.filter_in, feats))
  for layer in m.filter_inner:
    h = np.sin(freq * np_linear(layer, h))
  h = np_linear(m.filter_out, h)
  channels = h.shape[-1]
  rates = np.abs(np.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, channels))
  h = h * np.exp(-t[:, None] * rates)
  return h.reshape(max_len, m.order - 1, D_MODEL).transpose(1, 0, 2)


def np_hyena(m, x):
  seq_len = x.shape[1]
  u = np_linear(m.in_proj, x)
  uc = np_causal_conv(u, to_np(m.short_kernel), to_np(m.short_bias))
  parts = np.split(uc, m.order + 1, axis=-1)
  gates, v = parts[:-1], parts[-1]
  h = np_hyena_filters(m)
  bias = to_np(m.filter_bias)
  for i, gate in enumerate(reversed(gates[1:])):
    v = v * gate
    v = np_direct_conv(v, h[i, :seq_len]) + bias[i] * v
  return np_linear(m.out_proj, v * gates[0])


@pytest.mark.parametrize('order', [2, 3])
def test_hyena_matches_direct_numpy(order):
  m = make('hyena', max_len=13, order=order, filter_order=6)
  filters = nnx.jit(lambda m: m.long_filters())(m)
  np.testing.assert_allclose(filters, np_hyena_filters(m), rtol=1e-4, atol=1e-5)
  x = inputs(seq_len=T)  # shorter than max_len: uses the first T taps of the filters
  y = forward(m, x)
  np.testing.assert_allclose(y, np_hyena(m, to_np(x)), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(run_steps(m, x), y, rtol=RTOL, atol=ATOL)
  assert m.state_size() == (order - 1) * 13 * D_MODEL + 2 * (order + 1) * D_MODEL


def test_hyena_rejects_sequences_longer_than_max_len():
  m = make('hyena', max_len=13, filter_order=6)
  with pytest.raises(ValueError, match='max_len'):
    forward(m, inputs(seq_len=14))


# ---- LSTM / GRU -------------------------------------------------------------------------------

def np_rnn(m, x, kind):
  hidden = m.hidden
  wx, bx, wh = to_np(m.input_kernel), to_np(m.input_bias), to_np(m.recurrent_kernel)
  h = np.zeros((x.shape[0], hidden))
  c = np.zeros_like(h)
  hs = []
  for t in range(x.shape[1]):
    gx = x[:, t] @ wx + bx
    gh = h @ wh
    if kind == 'lstm':
      i, f, g, o = np.split(gx + gh, 4, axis=-1)
      c = np_sigmoid(f) * c + np_sigmoid(i) * np.tanh(g)
      h = np_sigmoid(o) * np.tanh(c)
    else:
      xr, xz, xn = np.split(gx, 3, axis=-1)
      hr, hz, hn = np.split(gh, 3, axis=-1)
      r, z = np_sigmoid(xr + hr), np_sigmoid(xz + hz)
      n = np.tanh(xn + r * (hn + to_np(m.recurrent_bias_n)))
      h = (1 - z) * n + z * h
    hs.append(h)
  y = np.stack(hs, 1)
  return y if m.out_proj is None else np_linear(m.out_proj, y)


@pytest.mark.parametrize('kind', ['lstm', 'gru'])
@pytest.mark.parametrize('hidden_size', [0, 5])
def test_rnn_matches_numpy_cell(kind, hidden_size):
  m = make(kind, hidden_size=hidden_size)
  # non-zero biases so the test sees where each bias enters the cell
  rng = np.random.default_rng(3)
  m.input_bias[...] = m.input_bias[...] + jnp.asarray(rng.normal(size=m.input_bias.shape))
  if kind == 'gru':
    m.recurrent_bias_n[...] = jnp.asarray(rng.normal(size=m.recurrent_bias_n.shape),
                                          jnp.float32)
  x = inputs()
  y = forward(m, x)
  assert (m.out_proj is None) == (hidden_size == 0)
  np.testing.assert_allclose(y, np_rnn(m, to_np(x), kind), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(run_steps(m, x), y, rtol=RTOL, atol=ATOL)
  assert m.state_size() == (2 if kind == 'lstm' else 1) * (hidden_size or D_MODEL)


def test_lstm_forget_bias_is_one():
  m = make('lstm')
  i, f, g, o = np.split(to_np(m.input_bias), 4)
  np.testing.assert_array_equal(f, 1.0)
  np.testing.assert_array_equal(np.concatenate([i, g, o]), 0.0)


# ---- shared properties ------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['mamba', 's4d', 'hyena', 'lstm', 'gru'])
def test_bfloat16_close_to_float32(name):
  """Same weights, compute in bf16: outputs stay near float32's (catches casts that lose the
  recurrence, e.g. a decay computed in bf16 over many steps)."""
  x = inputs()
  y32 = forward(make(name), x)
  y16 = forward(make(name, dtype=jnp.bfloat16), x.astype(jnp.bfloat16)).astype(jnp.float32)
  scale = float(jnp.max(jnp.abs(y32)))
  assert float(jnp.max(jnp.abs(y16 - y32))) < 0.05 * scale + 0.02


@pytest.mark.parametrize('name, key, value', [
    ('mamba', 'dt_rank', 'wide'),
    ('mamba', 'state_dim', 0),
    ('mamba', 'dt_max', 1e-4),  # below dt_min
    ('s4d', 'state_dim', 7),
    ('hyena', 'order', 1),
    ('hyena', 'pos_emb_dim', 4),
    ('lstm', 'hidden_size', -1),
    ('gru', 'hidden_size', 2.5),
    ('s4d', 'state_dimm', 64),  # a typo is an error, not a silently ignored option
])
def test_bad_options_raise_config_error(name, key, value):
  with pytest.raises(ConfigError, match=f'model.mixer_options.{name}.{key}'):
    make(name, **{key: value})


def test_mamba_dt_rank_accepts_numeric_string():
  assert make('mamba', dt_rank='3').dt_rank == 3


def test_mamba_sequential_and_associative_scans_agree():
  from models.mixers.mamba import selective_scan
  keys = jax.random.split(jax.random.key(3), 4)
  B, T, E, N = 2, 33, 6, 4
  dt = jax.nn.softplus(jax.random.normal(keys[0], (B, T, E)))
  x = jax.random.normal(keys[1], (B, T, E))
  b, c = jax.random.normal(keys[2], (B, T, N)), jax.random.normal(keys[3], (B, T, N))
  A = -jnp.arange(1, N + 1, dtype=jnp.float32)[None].repeat(E, 0)
  D = jnp.ones((E,))
  a = selective_scan(x, dt, b, c, A, D, scan='associative')
  s = selective_scan(x, dt, b, c, A, D, scan='sequential')
  np.testing.assert_allclose(a, s, rtol=1e-5, atol=1e-5)
  ga = jax.grad(lambda d: selective_scan(x, d, b, c, A, D, scan='associative').sum())(dt)
  gs = jax.grad(lambda d: selective_scan(x, d, b, c, A, D, scan='sequential').sum())(dt)
  np.testing.assert_allclose(ga, gs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('block_size', [1, 5, 16, 64])
def test_mamba_blockwise_scan_and_its_backward_pass_match_the_sequential_scan(block_size):
  # The blockwise scan's hand-written backward pass against autodiff of the sequential scan,
  # for every input; T = 33 is not a multiple of 5 or 16, and 64 > T (one padded block).
  from models.mixers.mamba import selective_scan
  keys = jax.random.split(jax.random.key(4), 6)
  B, T, E, N = 2, 33, 6, 4
  dt = jax.nn.softplus(jax.random.normal(keys[0], (B, T, E)))
  x = jax.random.normal(keys[1], (B, T, E))
  b, c = jax.random.normal(keys[2], (B, T, N)), jax.random.normal(keys[3], (B, T, N))
  A = -jnp.exp(jax.random.normal(keys[4], (E, N)))
  D = jnp.ones((E,))
  weights = jax.random.normal(keys[5], (B, T, E))     # a loss whose gradient varies with t
  def loss(scan, *args):
    return (selective_scan(*args, D, scan=scan, block_size=block_size) * weights).sum()
  args = (x, dt, b, c, A)
  np.testing.assert_allclose(selective_scan(*args, D, scan='blockwise', block_size=block_size),
                             selective_scan(*args, D, scan='sequential'), rtol=1e-5, atol=1e-5)
  got = jax.jit(jax.grad(lambda *a: loss('blockwise', *a), argnums=range(5)))(*args)
  want = jax.grad(lambda *a: loss('sequential', *a), argnums=range(5))(*args)
  for name, g, w in zip(('x', 'dt', 'B', 'C', 'A'), got, want):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=f'gradient wrt {name}')
  # Under vmap (seeds trained together): the custom backward pass batches to the per-seed one.
  grad_dt = jax.grad(lambda d, xx: loss('blockwise', xx, d, b, c, A))
  stacked = jax.jit(jax.vmap(grad_dt))(jnp.stack([dt, 2 * dt]), jnp.stack([x, -x]))
  np.testing.assert_allclose(stacked[1], grad_dt(2 * dt, -x), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(stacked[0], want[1], rtol=1e-4, atol=1e-4)
