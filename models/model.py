"""The sequence model: read-in -> stack of (mixer, MLP) blocks -> read-out.

The model knows a task only through `core.ModelIO`: vector inputs are read in by a linear
map (Garg et al.'s interleaved x / y tokens), token inputs by an embedding table. Which sequence
mixer each block uses is `config.model.mixer`: one registered name, or a comma-separated per-layer
pattern that is repeated to fill `num_layers` (e.g. 'attention,mamba').
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from core import ConfigError, ModelIO, require
from models.mixers import MIXERS, MixerSpec

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
NORMS = ('layernorm', 'rmsnorm')
NORM_POSITIONS = ('pre', 'post')
MLPS = ('gelu', 'swiglu', 'none')
POSITIONS = ('learned', 'rope', 'alibi', 'none')

# GPT-2's initialisation: N(0, 0.02) for every matrix.
_INIT = nnx.initializers.normal(0.02)


def default_mixer_options() -> ml_collections.ConfigDict:
  """`config.model.mixer_options`: every registered mixer's options with their defaults."""
  return ml_collections.ConfigDict(
      {name: dict(cls.default_options) for name, cls in sorted(MIXERS.items())})


def layer_mixers(model_config) -> List[str]:
  """The mixer name of each layer, from a name or a comma-separated repeating pattern."""
  pattern = [name.strip() for name in str(model_config.mixer).split(',') if name.strip()]
  num_layers = model_config.num_layers
  require(len(pattern) > 0, 'model.mixer', model_config.mixer,
          f'give a mixer name or a comma-separated pattern; known: {", ".join(sorted(MIXERS))}')
  for name in pattern:
    require(name in MIXERS, 'model.mixer', model_config.mixer,
            f'unknown mixer {name!r}; known: {", ".join(sorted(MIXERS))}')
  require(num_layers % len(pattern) == 0, 'model.mixer', model_config.mixer,
          f'a pattern of {len(pattern)} mixers must divide model.num_layers={num_layers}')
  return pattern * (num_layers // len(pattern))


def validate_model_config(model_config, io: ModelIO) -> None:
  """Checks every model key against what is allowed; raises ConfigError (one line)."""
  m = model_config
  require(isinstance(m.num_layers, int) and m.num_layers >= 1, 'model.num_layers', m.num_layers,
          'must be an integer >= 1')
  require(isinstance(m.d_model, int) and m.d_model >= 1, 'model.d_model', m.d_model,
          'must be an integer >= 1')
  require(isinstance(m.num_heads, int) and m.num_heads >= 1 and m.d_model % m.num_heads == 0,
          'model.num_heads', m.num_heads, f'must be >= 1 and divide model.d_model={m.d_model}')
  require(m.norm in NORMS, 'model.norm', m.norm, f'allowed: {", ".join(NORMS)}')
  require(m.norm_position in NORM_POSITIONS, 'model.norm_position', m.norm_position,
          f'allowed: {", ".join(NORM_POSITIONS)}')
  require(m.mlp in MLPS, 'model.mlp', m.mlp, f'allowed: {", ".join(MLPS)}')
  require(m.mlp_ratio > 0, 'model.mlp_ratio', m.mlp_ratio, 'must be > 0')
  require(m.position in POSITIONS, 'model.position', m.position,
          f'allowed: {", ".join(POSITIONS)}')
  require(m.dtype in DTYPES, 'model.dtype', m.dtype, f'allowed: {", ".join(DTYPES)}')
  require(m.max_len >= 0, 'model.max_len', m.max_len, 'must be >= 0 (0: the task\'s length)')
  require(m.max_len == 0 or m.max_len >= io.seq_len, 'model.max_len', m.max_len,
          f'the task needs {io.seq_len} positions (e.g. 2 * task.n_points for regression); '
          f'use >= {io.seq_len} or 0 for automatic')
  layer_mixers(m)
  known = set(MIXERS)
  for name in m.mixer_options.keys():
    require(name in known, f'model.mixer_options.{name}', '...',
            f'unknown mixer; known: {", ".join(sorted(known))}')


def _norm(kind: str, d_model: int, dtype, rngs) -> nnx.Module:
  if kind == 'layernorm':
    return nnx.LayerNorm(d_model, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
  return nnx.RMSNorm(d_model, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


class MLP(nnx.Module):
  """Position-wise feed-forward: GELU (GPT-2) or SwiGLU (gated, hidden scaled by 2/3)."""

  def __init__(self, d_model: int, kind: str, ratio: float, dtype, rngs: nnx.Rngs):
    self.kind = kind
    hidden = int(d_model * ratio)
    if kind == 'swiglu':
      hidden = max(1, int(2 * hidden / 3))
      self.gate = nnx.Linear(d_model, hidden, kernel_init=_INIT, dtype=dtype, rngs=rngs)
    self.up = nnx.Linear(d_model, hidden, kernel_init=_INIT, dtype=dtype, rngs=rngs)
    self.down = nnx.Linear(hidden, d_model, kernel_init=_INIT, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    if self.kind == 'swiglu':
      return self.down(jax.nn.silu(self.gate(x)) * self.up(x))
    return self.down(jax.nn.gelu(self.up(x)))


class Block(nnx.Module):
  """One residual block: mixer sublayer, then (optionally) an MLP sublayer."""

  def __init__(self, mixer_name: str, spec: MixerSpec, model_config, *, rngs: nnx.Rngs):
    self.pre_norm = model_config.norm_position == 'pre'
    options = model_config.mixer_options.get(mixer_name, ml_collections.ConfigDict())
    self.mixer = MIXERS[mixer_name](spec, options, rngs=rngs)
    self.mixer_norm = _norm(model_config.norm, spec.d_model, spec.dtype, rngs)
    self.has_mlp = model_config.mlp != 'none'
    if self.has_mlp:
      self.mlp = MLP(spec.d_model, model_config.mlp, model_config.mlp_ratio, spec.dtype, rngs)
      self.mlp_norm = _norm(model_config.norm, spec.d_model, spec.dtype, rngs)

  def _sublayers(self, x, mix):
    if self.pre_norm:
      x = x + mix(self.mixer_norm(x))
      if self.has_mlp:
        x = x + self.mlp(self.mlp_norm(x))
    else:
      x = self.mixer_norm(x + mix(x))
      if self.has_mlp:
        x = self.mlp_norm(x + self.mlp(x))
    return x

  def __call__(self, x_BxTxD, tokens_BxT=None):
    return self._sublayers(x_BxTxD, lambda h: self.mixer(h, tokens_BxT=tokens_BxT))

  def mixer_input(self, x_BxTxD):
    """What this block's mixer reads given the residual stream x: norm(x) pre-norm, x post-norm."""
    return self.mixer_norm(x_BxTxD) if self.pre_norm else x_BxTxD

  def step(self, x_BxD, state, token_B=None):
    new_state = []

    def mix(h):
      y, s = self.mixer.step(h, state, token_B=token_B)
      new_state.append(s)
      return y

    y = self._sublayers(x_BxD, mix)
    return y, new_state[0]


class SequenceModel(nnx.Module):
  """Read-in, blocks, final norm and read-out for any task's `ModelIO`."""

  def __init__(self, io: ModelIO, model_config, *, rngs: nnx.Rngs):
    validate_model_config(model_config, io)
    self.io = io
    self.dtype = DTYPES[model_config.dtype]
    self.max_len = model_config.max_len or io.seq_len
    d_model = model_config.d_model
    if io.input_kind == 'tokens':
      self.read_in = nnx.Embed(io.vocab_size, d_model, embedding_init=_INIT, dtype=self.dtype,
                               rngs=rngs)
    elif io.input_kind == 'vectors':
      self.read_in = nnx.Linear(io.input_dim, d_model, kernel_init=_INIT, dtype=self.dtype,
                                rngs=rngs)
    else:
      raise ConfigError(f'task input_kind={io.input_kind!r} is invalid: allowed tokens, vectors')
    self.learned_positions = model_config.position == 'learned'
    if self.learned_positions:
      self.position_embedding = nnx.Embed(self.max_len, d_model, embedding_init=_INIT,
                                          dtype=self.dtype, rngs=rngs)
    spec = MixerSpec(d_model=d_model, num_heads=model_config.num_heads, max_len=self.max_len,
                     position=model_config.position, dtype=self.dtype,
                     num_layers=model_config.num_layers)
    self.mixer_names = tuple(layer_mixers(model_config))
    self.blocks = nnx.List([Block(name, dataclasses.replace(spec, layer_index=i), model_config,
                                  rngs=rngs)
                            for i, name in enumerate(self.mixer_names)])
    self.final_norm = (_norm(model_config.norm, d_model, self.dtype, rngs)
                       if model_config.norm_position == 'pre' else None)
    self.read_out = nnx.Linear(d_model, io.output_dim, kernel_init=_INIT, dtype=self.dtype,
                               rngs=rngs)

  def _embed(self, inputs, positions):
    if self.io.input_kind == 'tokens':
      h = self.read_in(inputs)
    else:
      h = self.read_in(inputs.astype(self.dtype))
    if self.learned_positions:
      h = h + self.position_embedding(positions)
    return h.astype(self.dtype)

  def _read_out(self, h):
    if self.final_norm is not None:
      h = self.final_norm(h)
    return self.read_out(h).astype(jnp.float32)

  def __call__(self, inputs):
    """inputs: tokens_BxT (int) or features_BxTxF (float) -> outputs_BxTxO (float32)."""
    seq_len = inputs.shape[1]
    h = self._embed(inputs, jnp.arange(seq_len))
    tokens = inputs if self.io.input_kind == 'tokens' else None
    for block in self.blocks:
      h = block(h, tokens_BxT=tokens)
    return self._read_out(h)

  # Inspection: the residual stream, for probes and attention diagnostics.
  def hidden_states(self, inputs) -> List[jax.Array]:
    """Residual streams [after read-in, after block 1, ..., after block L], each BxTxD.

    The same computation as `__call__` (which equals `output_from_hidden(hidden_states[-1])`);
    the streams are in the compute dtype, before the final norm of a pre-norm model.
    """
    seq_len = inputs.shape[1]
    h = self._embed(inputs, jnp.arange(seq_len))
    tokens = inputs if self.io.input_kind == 'tokens' else None
    states = [h]
    for block in self.blocks:
      h = block(h, tokens_BxT=tokens)
      states.append(h)
    return states

  def attention_layers(self) -> List[int]:
    """Indices of the blocks whose mixer exposes softmax attention weights."""
    return [i for i, block in enumerate(self.blocks)
            if callable(getattr(block.mixer, 'attention_probs', None))]

  def attention_maps(self, inputs):
    """(outputs, probs_LxBxHxTxT or None): the model's outputs and the softmax weights of
    every attention layer (L of them) from the same forward pass, in float32."""
    states = self.hidden_states(inputs)
    layers = self.attention_layers()
    maps = [self.blocks[i].mixer.attention_probs(self.blocks[i].mixer_input(states[i]))
            .astype(jnp.float32) for i in layers]
    outputs = self.output_from_hidden(states[-1])
    return outputs, (jnp.stack(maps) if maps else None)

  def output_from_hidden(self, h_BxTxD):
    """The read-out (final norm, if any, then the output map) of a last-layer stream."""
    return self._read_out(h_BxTxD)

  # Generation: one position at a time through every mixer's step form.
  def init_state(self, batch_size: int):
    return {'position': jnp.zeros((), jnp.int32),
            'blocks': [block.mixer.init_state(batch_size) for block in self.blocks]}

  def step(self, input_B, state):
    """One position: token_B (int) or features_BxF -> (outputs_BxO, new state)."""
    h = self._embed(input_B, state['position'])
    token = input_B if self.io.input_kind == 'tokens' else None
    new_blocks = []
    for block, block_state in zip(self.blocks, state['blocks']):
      h, block_state = block.step(h, block_state, token_B=token)
      new_blocks.append(block_state)
    return self._read_out(h), {'position': state['position'] + 1, 'blocks': new_blocks}

  def state_size(self) -> int:
    """Floats carried per sequence when generating (all layers)."""
    return int(sum(block.mixer.state_size() for block in self.blocks))


def param_count(module: nnx.Module) -> int:
  return int(sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param))))


def build_model(io: ModelIO, model_config, seed: int) -> SequenceModel:
  return SequenceModel(io, model_config, rngs=nnx.Rngs(seed))
