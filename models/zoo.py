"""Comparing mixers on equal terms: one position rule, parameter counts, width matching.

  position_for('attention,mamba')  -> 'learned'
  count_params(config)             -> parameters of the model `config` builds (no allocation)
  match_width(config, 150_000)     -> sets config.model.d_model nearest that count

Used by the sweep files (configs/sweeps/) and `sweep.py`.
"""
from __future__ import annotations

from typing import List

import jax
from flax import nnx

from core import ConfigError, require
from models.mixers import MIXERS


def _pattern(mixer_pattern: str) -> List[str]:
  names = [name.strip() for name in str(mixer_pattern).split(',') if name.strip()]
  require(len(names) > 0, 'model.mixer', mixer_pattern,
          f'give a mixer name or a comma-separated pattern; known: {", ".join(sorted(MIXERS))}')
  for name in names:
    require(name in MIXERS, 'model.mixer', mixer_pattern,
            f'unknown mixer {name!r}; known: {", ".join(sorted(MIXERS))}')
  return names


def needs_positions(mixer_name: str) -> bool:
  """Whether the mixer is blind to order (its class attribute `needs_positions`)."""
  return bool(getattr(MIXERS[mixer_name], 'needs_positions', False))


def position_for(mixer_pattern: str) -> str:
  """`model.position` for a mixer or per-layer pattern under the one rule of the zoo sweeps:
  'learned' absolute positions if any layer's mixer is blind to order (softmax and linear
  attention), else 'none' (recurrent, convolutional and decaying mixers know order already).
  """
  return 'learned' if any(needs_positions(n) for n in _pattern(mixer_pattern)) else 'none'


def count_params(model_config, io) -> int:
  """Parameter count of the model `model_config` builds for a task's `io` (a core.ModelIO),
  without allocating (abstract evaluation of the constructor)."""
  from models.model import build_model  # pylint: disable=g-import-not-at-top
  abstract = nnx.eval_shape(lambda: build_model(io, model_config, seed=0))
  return int(sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param))))


def match_width(model_config, io, target: int) -> None:
  """Sets model_config.d_model to bring the parameter count nearest `target`.

  Widths are multiples of 2 * num_heads (even head dimensions, as rotary and retention need);
  a width a mixer rejects (GLA's halved key width must divide by the heads) is skipped.
  """
  unit = 2 * model_config.num_heads

  def count(multiple):
    model_config.d_model = multiple * unit
    try:
      return count_params(model_config, io)
    except ConfigError:
      return None

  # The count grows monotonically with width: bisect on the multiple of `unit`.
  lo, hi = 1, max(2, 2048 // unit)
  while lo < hi:
    mid = (lo + hi) // 2
    value = next((v for v in map(count, range(mid, mid + 4)) if v is not None), None)
    if value is not None and value < target:
      lo = mid + 1
    else:
      hi = mid
  best = None
  for multiple in range(lo - 2, lo + 3):
    value = count(multiple) if multiple >= 1 else None
    if value is not None and (best is None or abs(value - target) < best[0]):
      best = (abs(value - target), multiple * unit)
  if best is None:
    raise ValueError(f'no width near {target:,} parameters is valid for {model_config.mixer}')
  model_config.d_model = best[1]
