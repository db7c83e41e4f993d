"""What an evaluation suite is handed about the trained model."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional


@dataclasses.dataclass
class ModelFns:
  """Jitted functions of a restored model.

  predict(batch) -> raw model outputs `outputs_BxTxO` for the task's `model_inputs(batch)`
    (for regression O=1; for token tasks O=vocab_size, unnormalised logits).
  generate(prompt_BxT, prompt_len_B, num_new, key, temperature, top_k) -> tokens_Bx(T+num_new)
    or None for vector tasks. Sampling continues each row after its own prompt_len
    (positions >= prompt_len are overwritten); temperature 0 means greedy; top_k 0 means all.
  """
  predict: Callable[[Any], Any]
  generate: Optional[Callable[..., Any]] = None
