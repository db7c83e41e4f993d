"""Classic recurrent mixers: LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of
Gers et al. 2000) and GRU (Cho et al. 2014).

The parallel form is the recurrence itself (`jax.lax.scan` over time); only the input
projections of all positions are computed at once. The step form is one cell application.
Cells read x in spec.dtype and carry their state in float32.

  LSTM: [i, f, g, o] = W x + U h + b;  c = σ(f) c + σ(i) tanh(g);  h = σ(o) tanh(c)
        (forget-gate bias initialised to 1, Gers et al. / Jozefowicz et al. 2015)
  GRU:  r = σ(W_r x + U_r h + b_r), z = σ(W_z x + U_z h + b_z),
        n = tanh(W_n x + b_n + r ⊙ (U_n h + b_hn)),  h = (1 - z) ⊙ n + z ⊙ h
        (the reset gate applied after the recurrent matmul, as in cuDNN / PyTorch / Flax)

Input kernels use LeCun-normal init, recurrent kernels one orthogonal block per gate.
If hidden_size != d_model, a linear layer maps h back to d_model.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from models.mixers.base import Mixer, MixerSpec, register
from models.mixers import scan_utils as su


def _orthogonal_blocks(key, hidden: int, num_gates: int):
  """H x (gates * H): an independent orthogonal H x H matrix per gate."""
  keys = jax.random.split(key, num_gates)
  init = nnx.initializers.orthogonal()
  return jnp.concatenate([init(k, (hidden, hidden), jnp.float32) for k in keys], axis=1)


class _RecurrentMixer(Mixer):
  """Shared plumbing: input projection for all gates, scan over time, optional out-projection.

  Subclasses set `num_gates`, `state_names` and implement `_cell(gates_x, state) -> state`
  and `_bias_init(hidden)`.
  """
  default_options = dict(hidden_size=0)  # 0: same as d_model
  num_gates = 0
  state_names = ()

  def __init__(self, spec: MixerSpec, options, *, rngs: nnx.Rngs):
    name = self.mixer_name
    su.check_known(options, self.default_options, name)
    self.spec = spec
    hidden = su.positive_int(options, self.default_options, name, 'hidden_size', minimum=0,
                             allowed='0 (same as d_model) or a positive integer')
    self.hidden = hidden or spec.d_model
    gates = self.num_gates * self.hidden
    self.input_kernel = nnx.Param(nnx.initializers.lecun_normal()(
        rngs.params(), (spec.d_model, gates), jnp.float32))
    self.input_bias = nnx.Param(self._bias_init(self.hidden))
    self.recurrent_kernel = nnx.Param(_orthogonal_blocks(rngs.params(), self.hidden,
                                                         self.num_gates))
    self.out_proj = (nnx.Linear(self.hidden, spec.d_model, dtype=spec.dtype,
                                param_dtype=spec.param_dtype, rngs=rngs)
                     if self.hidden != spec.d_model else None)

  def _bias_init(self, hidden: int):
    return jnp.zeros((self.num_gates * hidden,), jnp.float32)

  def _input_gates(self, x):
    """W x + b for every gate, computed in spec.dtype, returned in float32."""
    dtype = self.spec.dtype
    pre = x.astype(dtype) @ self.input_kernel[...].astype(dtype)
    return pre.astype(jnp.float32) + self.input_bias[...]

  def _recurrent_gates(self, h_BxH):
    dtype = self.spec.dtype
    return (h_BxH.astype(dtype) @ self.recurrent_kernel[...].astype(dtype)).astype(jnp.float32)

  def _cell(self, gates_x_BxG, state):
    raise NotImplementedError

  def _readout(self, h):
    y = h.astype(self.spec.dtype)
    return y if self.out_proj is None else self.out_proj(y)

  def __call__(self, x_BxTxD, *, tokens_BxT=None):
    """Runs the cell over time from a zero state; returns the hidden states mapped to D."""
    gates_x_TxBxG = self._input_gates(x_BxTxD).swapaxes(0, 1)

    def body(state, gates_x_BxG):
      state = self._cell(gates_x_BxG, state)
      return state, state['h_BxH']

    _, h_TxBxH = jax.lax.scan(body, self.init_state(x_BxTxD.shape[0]), gates_x_TxBxG)
    return self._readout(h_TxBxH.swapaxes(0, 1))

  def init_state(self, batch_size: int):
    return {key: jnp.zeros((batch_size, self.hidden), jnp.float32) for key in self.state_names}

  def step(self, x_BxD, state, *, token_B=None):
    state = self._cell(self._input_gates(x_BxD), state)
    return self._readout(state['h_BxH']), state

  def state_size(self) -> int:
    return len(self.state_names) * self.hidden


@register('lstm')
class LSTM(_RecurrentMixer):
  """LSTM mixer. Option hidden_size (0 = d_model). State: h and c (2 * hidden floats)."""
  num_gates = 4
  state_names = ('h_BxH', 'c_BxH')

  def _bias_init(self, hidden: int):
    # gate order i, f, g, o; forget bias 1 so the cell remembers by default early in training
    return jnp.zeros((4, hidden), jnp.float32).at[1].set(1.0).reshape(-1)

  def _cell(self, gates_x_BxG, state):
    pre = gates_x_BxG + self._recurrent_gates(state['h_BxH'])
    i, f, g, o = jnp.split(pre, 4, axis=-1)
    c = jax.nn.sigmoid(f) * state['c_BxH'] + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return dict(h_BxH=h, c_BxH=c)


@register('gru')
class GRU(_RecurrentMixer):
  """GRU mixer. Option hidden_size (0 = d_model). State: h (hidden floats)."""
  num_gates = 3
  state_names = ('h_BxH',)

  def __init__(self, spec: MixerSpec, options, *, rngs: nnx.Rngs):
    super().__init__(spec, options, rngs=rngs)
    # b_hn sits inside r ⊙ (U_n h + b_hn), so it is not foldable into the input bias
    self.recurrent_bias_n = nnx.Param(jnp.zeros((self.hidden,), jnp.float32))

  def _cell(self, gates_x_BxG, state):
    h = state['h_BxH']
    x_r, x_z, x_n = jnp.split(gates_x_BxG, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(self._recurrent_gates(h), 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * (h_n + self.recurrent_bias_n[...]))
    return dict(h_BxH=(1.0 - z) * n + z * h)
