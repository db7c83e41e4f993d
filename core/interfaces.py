"""Shapes that pass between layers: what a task asks of a model, and a batch of prompts."""
from __future__ import annotations

import dataclasses
from typing import Dict

import jax

Batch = Dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class ModelIO:
  """Shapes a task asks of a model.

  input_kind: 'vectors' (float features per position, read in linearly) or 'tokens'
    (integer ids, read in by an embedding table).
  input_dim: features per position for 'vectors'; unused for 'tokens'.
  vocab_size: number of token ids for 'tokens'; unused for 'vectors'.
  output_dim: width of the model's read-out (1 for scalar regression, vocab_size for LM).
  seq_len: the longest sequence the task produces (the model's context must cover it).
  """
  input_kind: str
  seq_len: int
  output_dim: int
  input_dim: int = 0
  vocab_size: int = 0
