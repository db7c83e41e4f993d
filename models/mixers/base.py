"""The sequence-mixer interface. A new mixer is one file plus one `@register` line.

Every mixer maps `x_BxTxD -> y_BxTxD` causally (output t depends on inputs <= t) and has a
step form for generation that carries a per-sequence state and reproduces the parallel form.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from flax import nnx
import ml_collections

from core import Registry


@dataclasses.dataclass(frozen=True)
class MixerSpec:
  """What every mixer is told about its place in the model."""
  d_model: int
  num_heads: int
  max_len: int           # longest sequence (context) the model will see
  position: str          # 'learned' | 'rope' | 'alibi' | 'none' (rope/alibi used by attention)
  dtype: Any = jnp.float32        # compute dtype
  param_dtype: Any = jnp.float32  # parameters stay float32
  # Depth, for initialisations that depend on it (von Oswald et al.'s LSA scales by
  # 1 / num_layers; RWKV-4's decays and token-shift mixes vary with layer_index / num_layers).
  num_layers: int = 1
  layer_index: int = 0            # 0-based index of this block


class Mixer(nnx.Module):
  """Base class of sequence mixers.

  Subclasses implement:
    __init__(self, spec: MixerSpec, options: ml_collections.ConfigDict, *, rngs: nnx.Rngs)
    __call__(self, x_BxTxD, *, tokens_BxT=None) -> y_BxTxD        (parallel, causal)
    init_state(self, batch_size) -> pytree of arrays               (state before position 0)
    step(self, x_BxD, state, *, token_B=None) -> (y_BxD, state)    (one position)
    state_size(self) -> int  floats carried per sequence by the step form (for a KV cache:
                             at `spec.max_len`)
  The class attribute `default_options` is a dict of option name -> default value; the
  config exposes them as `config.model.mixer_options.<name>.<option>`.
  `tokens_BxT` / `token_B` are the raw input ids for token tasks (None for vector tasks);
  only mixers that need them (the n-gram head) read them.
  """
  default_options: Dict[str, Any] = {}
  # Whether the mixer is blind to order (a permutation of the earlier positions leaves its
  # output unchanged), so that the model must add positions (`models.zoo.position_for`).
  needs_positions: bool = False

  def init_state(self, batch_size: int):
    raise NotImplementedError

  def step(self, x_BxD, state, *, token_B=None):
    raise NotImplementedError

  def state_size(self) -> int:
    raise NotImplementedError


MIXERS = Registry('mixer', 'model.mixer')


def register(name: str) -> Callable[[type], type]:
  """Class decorator: `@register('mamba')` makes `config.model.mixer` find the class.

  What the rest of the code needs to know about a mixer (e.g. `needs_positions`) is a class
  attribute, recorded as the entry's metadata.
  """
  def wrap(cls):
    cls.mixer_name = name
    return MIXERS.register(name, needs_positions=getattr(cls, 'needs_positions', False))(cls)
  return wrap
