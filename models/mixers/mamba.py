"""Mamba's selective state-space block as a sequence mixer (Gu & Dao 2023, "Mamba: Linear-Time
Sequence Modeling with Selective State Spaces", Section 3, Algorithm 2 and Figure 3).

  [x, z] = in_proj(u)                                     (E = expand * D channels each)
  x      = silu(causal_depthwise_conv1d(x))               (d_conv taps)
  Δ      = softplus(dt_proj(x_proj_Δ(x)) + dt_bias)       (rank-R bottleneck, per channel)
  B, C   = x_proj_B(x), x_proj_C(x)                       (N each, shared across channels)
  h_t    = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t               (A = -exp(A_log), diagonal E x N)
  y_t    = C_t · h_t + D x_t
  out    = out_proj(y * silu(z))

The discretisation is the paper's: zero-order hold for A, the simplified Euler rule Δ B for B.
The parallel form runs the recurrence in float32, either over time (`scan`: associative,
sequential, or blockwise: sequential with a hand-written backward pass that recomputes each
block's states, see `blockwise_selective_scan`) or chunk-parallel (`chunk_size` > 0:
Mamba-2's SSD blocks with Mamba-1's per-channel, per-state decays, see
`chunked_selective_scan`); the step form carries the last
d_conv - 1 pre-convolution inputs and the state h (E x N).
Per the paper, A_log and D are usually excluded from weight decay (the optimizer's concern).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from core import require
from models.mixers.base import Mixer, MixerSpec, register
from models.mixers import scan_utils as su

NAME = 'mamba'
SCANS = ('auto', 'associative', 'sequential', 'blockwise')
DT_INIT_FLOOR = 1e-4  # the paper's clamp on the sampled initial Δ


@register(NAME)
class Mamba(Mixer):
  """Selective SSM block. Options: state_dim N, expand, d_conv, dt_rank ('auto' = ceil(D/16)),
  dt_min / dt_max (range of the log-uniform initial Δ), scan ('associative': parallel
  `lax.associative_scan`; 'sequential': `lax.scan` over time, about 3x faster on CPUs, where
  the parallel form's extra work is not hidden; 'blockwise': the sequential recurrence with a
  custom backward pass that keeps only every block_size-th state and recomputes the rest,
  a 1.1-1.4x faster train step than 'sequential' on a 2-core CPU (docs/speed.md); 'auto':
  blockwise on CPU, else
  associative), block_size (positions per block of 'blockwise'), chunk_size (0: use `scan`;
  C >= 1: the chunk-parallel form with C positions per chunk).
  Every form computes the same recurrence with the same parameters."""
  # chunk_size 0: on a 2-core CPU the sequential scan's forward + backward is 1.5-2.3x faster
  # than chunks of 2 or 4 at 128-2048 tokens (d=64); chunks trade C times the scan's
  # elementwise work for T / C sequential steps.
  default_options = dict(state_dim=16, expand=2, d_conv=4, dt_rank='auto', dt_min=0.001,
                         dt_max=0.1, scan='auto', block_size=16, chunk_size=0)

  def __init__(self, spec: MixerSpec, options, *, rngs: nnx.Rngs):
    defaults = self.default_options
    su.check_known(options, defaults, NAME)
    self.spec = spec
    d_model = spec.d_model
    self.state_dim = su.positive_int(options, defaults, NAME, 'state_dim')
    expand = su.positive_int(options, defaults, NAME, 'expand')
    self.d_conv = su.positive_int(options, defaults, NAME, 'd_conv')
    self.dt_rank = su.int_or_auto(options, defaults, NAME, 'dt_rank', math.ceil(d_model / 16))
    dt_min = su.positive_float(options, defaults, NAME, 'dt_min')
    dt_max = su.positive_float(options, defaults, NAME, 'dt_max')
    require(dt_min <= dt_max, su.option_key(NAME, 'dt_max'), dt_max,
            f'a number >= dt_min={dt_min}')
    self.scan = str(su.option(options, defaults, 'scan'))
    require(self.scan in SCANS, su.option_key(NAME, 'scan'), self.scan,
            f'allowed: {", ".join(SCANS)}')
    self.block_size = su.positive_int(options, defaults, NAME, 'block_size')
    self.chunk_size = su.positive_int(options, defaults, NAME, 'chunk_size', minimum=0,
                                      allowed="0 (use `scan`) or an integer >= 1")
    self.d_inner = expand * d_model
    inner, rank, n = self.d_inner, self.dt_rank, self.state_dim
    linear = dict(dtype=spec.dtype, param_dtype=spec.param_dtype, rngs=rngs)

    self.in_proj = nnx.Linear(d_model, 2 * inner, use_bias=False, **linear)
    self.conv_kernel = nnx.Param(su.torch_default_uniform(rngs.params(), (self.d_conv, inner),
                                                          fan_in=self.d_conv))
    self.conv_bias = nnx.Param(su.torch_default_uniform(rngs.params(), (inner,),
                                                        fan_in=self.d_conv))
    self.x_proj = nnx.Linear(inner, rank + 2 * n, use_bias=False, **linear)
    # Δ projection: weights U(±R^-1/2); bias = softplus^-1(Δ0), Δ0 log-uniform in
    # [dt_min, dt_max], so softplus(bias) starts in that range (the paper's Δ init).
    bound = rank ** -0.5
    self.dt_kernel = nnx.Param(jax.random.uniform(rngs.params(), (rank, inner), jnp.float32,
                                                  -bound, bound))
    log_dt = jax.random.uniform(rngs.params(), (inner,), jnp.float32, math.log(dt_min),
                                math.log(dt_max))
    dt0 = jnp.maximum(jnp.exp(log_dt), DT_INIT_FLOOR)
    self.dt_bias = nnx.Param(dt0 + jnp.log(-jnp.expm1(-dt0)))
    # S4D-real init: A_n = -(n + 1), the same for every channel.
    self.A_log = nnx.Param(jnp.asarray(np.log(np.tile(np.arange(1, n + 1), (inner, 1))),
                                       jnp.float32))
    self.D = nnx.Param(jnp.ones((inner,), jnp.float32))
    self.out_proj = nnx.Linear(inner, d_model, use_bias=False, **linear)

  # -- pieces shared by the parallel and step forms --------------------------------------------

  def _selection(self, x_conv):
    """Input-dependent SSM parameters from the conv output (..., E) in compute dtype:
    Δ (..., E), B (..., N), C (..., N), all float32."""
    dtype = self.spec.dtype
    proj = self.x_proj(x_conv)
    rank, n = self.dt_rank, self.state_dim
    dt_low, b_in, c_out = proj[..., :rank], proj[..., rank:rank + n], proj[..., rank + n:]
    dt_pre = dt_low @ self.dt_kernel[...].astype(dtype)
    # bias added and softplus taken in float32 (Δ sets the decay rate exp(Δ A))
    dt = jax.nn.softplus(dt_pre.astype(jnp.float32) + self.dt_bias[...])
    return dt, b_in.astype(jnp.float32), c_out.astype(jnp.float32)

  def _A(self):
    return -jnp.exp(self.A_log[...])  # E x N, strictly negative: a stable decay

  def _gate_out(self, y, z):
    y = y.astype(self.spec.dtype) * jax.nn.silu(z)
    return self.out_proj(y)

  # -- parallel form -------------------------------------------------------------------------

  def __call__(self, x_BxTxD, *, tokens_BxT=None):
    """Causal selective-SSM mixing of x_BxTxD; returns y_BxTxD in spec.dtype."""
    dtype = self.spec.dtype
    xz_BxTx2E = self.in_proj(x_BxTxD.astype(dtype))
    x_BxTxE, z_BxTxE = jnp.split(xz_BxTx2E, 2, axis=-1)
    x_BxTxE = jax.nn.silu(su.causal_depthwise_conv(x_BxTxE, self.conv_kernel[...],
                                                   self.conv_bias[...]))
    y_BxTxE = selective_scan(x_BxTxE, *self._selection(x_BxTxE), self._A(), self.D[...],
                             scan=self.scan, chunk_size=self.chunk_size,
                             block_size=self.block_size)
    return self._gate_out(y_BxTxE, z_BxTxE)

  # -- step form -----------------------------------------------------------------------------

  def init_state(self, batch_size: int):
    """Last d_conv - 1 pre-conv inputs (oldest first) and the SSM state h, all zeros."""
    return dict(
        conv_window_BxKm1xE=jnp.zeros((batch_size, self.d_conv - 1, self.d_inner), jnp.float32),
        ssm_BxExN=jnp.zeros((batch_size, self.d_inner, self.state_dim), jnp.float32))

  def step(self, x_BxD, state, *, token_B=None):
    """One position of `__call__`: returns (y_BxD, new state)."""
    dtype = self.spec.dtype
    xz_Bx2E = self.in_proj(x_BxD.astype(dtype))
    x_BxE, z_BxE = jnp.split(xz_Bx2E, 2, axis=-1)
    x_BxE, window = su.causal_depthwise_conv_step(
        state['conv_window_BxKm1xE'], x_BxE, self.conv_kernel[...], self.conv_bias[...])
    x_BxE = jax.nn.silu(x_BxE)
    dt_BxE, b_BxN, c_BxN = self._selection(x_BxE)
    x32_BxE = x_BxE.astype(jnp.float32)
    decay_BxExN = jnp.exp(dt_BxE[..., None] * self._A())
    h_BxExN = decay_BxExN * state['ssm_BxExN'] + (dt_BxE * x32_BxE)[..., None] * b_BxN[:, None]
    y_BxE = jnp.einsum('ben,bn->be', h_BxExN, c_BxN) + self.D[...] * x32_BxE
    return self._gate_out(y_BxE, z_BxE), dict(conv_window_BxKm1xE=window, ssm_BxExN=h_BxExN)

  def state_size(self) -> int:
    return (self.d_conv - 1) * self.d_inner + self.d_inner * self.state_dim


def selective_scan(x_BxTxE, dt_BxTxE, b_BxTxN, c_BxTxN, A_ExN, D_E, scan='associative',
                   chunk_size=0, block_size=16):
  """y_t = C_t · h_t + D x_t with h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t, h_{-1} = 0.

  Runs in float32. chunk_size > 0: `chunked_selective_scan`. Otherwise 'associative' scans
  in parallel over time and materialises B x T x E x N (fine at the widths this codebase
  trains; the paper's fused kernel avoids it on GPU); 'sequential' carries h (B x E x N)
  through `lax.scan`; 'blockwise' is `blockwise_selective_scan`; 'auto' picks by backend.
  """
  if chunk_size:
    return chunked_selective_scan(x_BxTxE, dt_BxTxE, b_BxTxN, c_BxTxN, A_ExN, D_E, chunk_size)
  x_BxTxE = x_BxTxE.astype(jnp.float32)
  if scan == 'auto':
    scan = 'blockwise' if jax.default_backend() == 'cpu' else 'associative'
  if scan == 'blockwise':
    return (blockwise_selective_scan(x_BxTxE, dt_BxTxE, b_BxTxN, c_BxTxN, A_ExN, block_size)
            + D_E * x_BxTxE)
  if scan == 'sequential':
    def step(h_BxExN, inputs):
      dt_BxE, x_BxE, b_BxN, c_BxN = inputs
      h_BxExN = (jnp.exp(dt_BxE[..., None] * A_ExN) * h_BxExN
                 + (dt_BxE * x_BxE)[..., None] * b_BxN[:, None, :])
      return h_BxExN, jnp.einsum('ben,bn->be', h_BxExN, c_BxN)
    batch, _, inner = x_BxTxE.shape
    h0 = jnp.zeros((batch, inner, A_ExN.shape[1]), jnp.float32)
    time_major = [a.astype(jnp.float32).swapaxes(0, 1)
                  for a in (dt_BxTxE, x_BxTxE, b_BxTxN, c_BxTxN)]
    _, y_TxBxE = jax.lax.scan(step, h0, time_major)
    return y_TxBxE.swapaxes(0, 1) + D_E * x_BxTxE
  decay_BxTxExN = jnp.exp(dt_BxTxE[..., None] * A_ExN)
  drive_BxTxExN = (dt_BxTxE * x_BxTxE)[..., None] * b_BxTxN[:, :, None, :]
  h_BxTxExN = su.linear_scan(decay_BxTxExN, drive_BxTxExN, axis=1)
  return jnp.einsum('bten,btn->bte', h_BxTxExN, c_BxTxN) + D_E * x_BxTxE


def chunked_selective_scan(x_BxTxE, dt_BxTxE, b_BxTxN, c_BxTxN, A_ExN, D_E, chunk_size):
  """`selective_scan` computed chunk by chunk, C = chunk_size positions per chunk (float32).

  Within a chunk, with in-chunk cumulative log-decays s_i = sum_{t<=i} Δ_t A (E x N), the
  states are h_i = exp(s_i) h_start + sum_{j<=i} exp(s_i - s_j) Δ_j B_j x_j: a masked,
  decay-weighted product over the chunk (Mamba-2's SSD block; Mamba-1's decay differs per
  channel and state, so the weights are C x C x E x N rather than C x C), and y_i = C_i · h_i.
  A `lax.scan` over the T / C chunks carries h. Every exponential has a non-positive argument:
  s_i - s_j for j <= i is formed in log space (exp(s_i) exp(-s_j) overflows under strong
  decay). The chunk body is rematerialised in the backward pass, so memory holds one chunk's
  weights rather than T x C x E x N of them. T need not divide by C: the tail is padded with
  Δ = 0 (decay 1, no input) and sliced off.
  """
  batch, seq_len, inner = x_BxTxE.shape
  C = max(1, min(chunk_size, seq_len))
  pad = (-seq_len) % C
  num_chunks = (seq_len + pad) // C

  def chunk_major(a_BxTxF):   # -> M x B x C x F, M = num_chunks
    a_BxTxF = jnp.pad(a_BxTxF.astype(jnp.float32), ((0, 0), (0, pad), (0, 0)))
    return jnp.moveaxis(a_BxTxF.reshape(batch, num_chunks, C, a_BxTxF.shape[-1]), 1, 0)

  causal_CxC = jnp.tril(jnp.ones((C, C), bool))

  @jax.checkpoint
  def chunk(h_BxExN, inputs):
    x_BxCxE, dt_BxCxE, b_BxCxN, c_BxCxN = inputs
    s_BxCxExN = jnp.cumsum(dt_BxCxE[..., None] * A_ExN, axis=1)
    exponent = s_BxCxExN[:, :, None] - s_BxCxExN[:, None]          # B x C(i) x C(j) x E x N
    weights = jnp.exp(jnp.where(causal_CxC[:, :, None, None], exponent, -jnp.inf))
    h_BxCxExN = (jnp.einsum('bijen,bjn,bje->bien', weights, b_BxCxN, dt_BxCxE * x_BxCxE)
                 + jnp.exp(s_BxCxExN) * h_BxExN[:, None])
    return h_BxCxExN[:, -1], jnp.einsum('bien,bin->bie', h_BxCxExN, c_BxCxN)

  h0 = jnp.zeros((batch, inner, A_ExN.shape[1]), jnp.float32)
  inputs = tuple(chunk_major(a) for a in (x_BxTxE, dt_BxTxE, b_BxTxN, c_BxTxN))
  _, y_MxBxCxE = jax.lax.scan(chunk, h0, inputs)
  y_BxTxE = jnp.moveaxis(y_MxBxCxE, 0, 1).reshape(batch, num_chunks * C, inner)[:, :seq_len]
  return y_BxTxE + D_E * x_BxTxE.astype(jnp.float32)


def blockwise_selective_scan(x_BxTxE, dt_BxTxE, b_BxTxN, c_BxTxN, A_ExN, block_size):
  """C_t · h_t of `selective_scan` (no D term), the recurrence run step by step in float32.

  The same arithmetic as the sequential scan, organised for the backward pass: the forward
  pass keeps only the state at the start of each block of K = block_size positions (B x E x N
  per block, instead of several B x T x E x N residuals under autodiff), and the backward
  pass, block by block from the end, recomputes the block's K states, runs the adjoint
  recurrence g_t = C_t dy_t + exp(Δ_{t+1} A) g_{t+1} over them, and forms every input's
  gradient with vectorised products over the block. T need not divide by K: the tail is
  padded with Δ = 0, x = 0 (decay 1, no input) and sliced off.
  """
  batch, seq_len, inner = x_BxTxE.shape
  K = max(1, min(block_size, seq_len))
  pad = (-seq_len) % K
  num_blocks = (seq_len + pad) // K

  def block_major(a_BxTxF):   # -> M x K x B x F
    a_BxTxF = jnp.pad(a_BxTxF.astype(jnp.float32), ((0, 0), (0, pad), (0, 0)))
    return a_BxTxF.reshape(batch, num_blocks, K, a_BxTxF.shape[-1]).transpose(1, 2, 0, 3)

  inputs = tuple(block_major(a) for a in (x_BxTxE, dt_BxTxE, b_BxTxN, c_BxTxN))
  y_MxKxBxE = _blockwise_scan(*inputs, A_ExN.astype(jnp.float32))
  y_BxTxE = y_MxKxBxE.transpose(2, 0, 1, 3).reshape(batch, num_blocks * K, inner)
  return y_BxTxE[:, :seq_len]


def _block_states(h_BxExN, x_KxBxE, dt_KxBxE, b_KxBxN, A_ExN):
  """Decays exp(Δ_t A) and states h_t (K x B x E x N each) of one block from the state before."""
  decay = jnp.exp(dt_KxBxE[..., None] * A_ExN)
  drive = (dt_KxBxE * x_KxBxE)[..., None] * b_KxBxN[:, :, None, :]

  def step(h, decay_drive):
    h = decay_drive[0] * h + decay_drive[1]
    return h, h

  _, h_KxBxExN = jax.lax.scan(step, h_BxExN, (decay, drive))
  return decay, h_KxBxExN


@jax.custom_vjp
def _blockwise_scan(x, dt, b, c, A):
  return _blockwise_forward(x, dt, b, c, A)[0]


def _blockwise_forward(x, dt, b, c, A):
  _, _, batch, inner = x.shape

  def block(h_BxExN, inputs):
    x_k, dt_k, b_k, c_k = inputs
    _, h_k = _block_states(h_BxExN, x_k, dt_k, b_k, A)
    return h_k[-1], (h_BxExN, (h_k * c_k[:, :, None, :]).sum(-1))

  h0 = jnp.zeros((batch, inner, A.shape[1]), jnp.float32)
  _, (starts_MxBxExN, y) = jax.lax.scan(block, h0, (x, dt, b, c))
  return y, (x, dt, b, c, A, starts_MxBxExN)


def _blockwise_backward(residuals, dy):
  x, dt, b, c, A, starts = residuals
  _, _, batch, inner = x.shape

  def block(carry, inputs):
    # g_after: exp(Δ A) g of the block's first position after it, i.e. dL/dh of this
    # block's last state through the states that follow; dA accumulates over blocks.
    g_after, dA = carry
    x_k, dt_k, b_k, c_k, dy_k, h_start = inputs
    decay, h_k = _block_states(h_start, x_k, dt_k, b_k, A)
    direct = dy_k[..., None] * c_k[:, :, None, :]          # dL/dh_t through y_t

    def step(g_next, direct_decay):
      g = direct_decay[0] + g_next                         # dL/dh_t
      return direct_decay[1] * g, g

    g_before, g_k = jax.lax.scan(step, g_after, (direct, decay), reverse=True)
    h_prev = jnp.concatenate([h_start[None], h_k[:-1]], 0)
    d_log_decay = g_k * h_prev * decay                       # dL/d(Δ_t A)
    dA = dA + (d_log_decay * dt_k[..., None]).sum((0, 1))
    d_drive = (g_k * b_k[:, :, None, :]).sum(-1)           # dL/d(Δ_t x_t), K x B x E
    d_dt = (d_log_decay * A).sum(-1) + d_drive * x_k
    d_x = d_drive * dt_k
    d_b = (g_k * (dt_k * x_k)[..., None]).sum(2)
    d_c = (dy_k[..., None] * h_k).sum(2)
    return (g_before, dA), (d_x, d_dt, d_b, d_c)

  init = (jnp.zeros((batch, inner, A.shape[1]), jnp.float32), jnp.zeros_like(A))
  (_, dA), (d_x, d_dt, d_b, d_c) = jax.lax.scan(block, init, (x, dt, b, c, dy, starts),
                                                reverse=True)
  return d_x, d_dt, d_b, d_c, dA


_blockwise_scan.defvjp(_blockwise_forward, _blockwise_backward)
