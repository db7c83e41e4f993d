"""What an evaluation suite is handed about the trained model."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Optional

import numpy as np

# Evaluation prompts are drawn in blocks of this size from fold_in(key(seed), block), so a
# suite's prompts do not depend on eval.batch_size.
GENERATION_BLOCK = 256


def draw_in_blocks(sample_block: Callable[[Any], Dict[str, Any]], num_prompts: int,
                   seed: int) -> Dict[str, np.ndarray]:
  """The first num_prompts rows of sample_block(fold_in(key(seed), b)) for b = 0, 1, ...
  (each call gives GENERATION_BLOCK rows), as numpy arrays: deterministic in seed alone."""
  import jax
  base_key = jax.random.key(seed)
  blocks = []
  for block in range(math.ceil(num_prompts / GENERATION_BLOCK)):
    batch = sample_block(jax.random.fold_in(base_key, block))
    blocks.append({k: np.asarray(v) for k, v in batch.items()})
  return {k: np.concatenate([b[k] for b in blocks])[:num_prompts] for k in blocks[0]}


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


def make_model_fns(model, task):
  """Jitted predict (and generate, for token tasks) of a restored model."""
  import jax
  from flax import nnx
  from models.generate import generate

  graphdef, state = nnx.split(model)

  @jax.jit
  def predict(state, inputs):
    return nnx.merge(graphdef, state)(inputs)

  def predict_batch(batch):
    return predict(state, task.model_inputs(batch))

  gen = None
  if task.io().input_kind == 'tokens':
    def _generate(state, prompt, prompt_len, key, temperature, num_new, top_k):
      return generate(nnx.merge(graphdef, state), prompt, prompt_len, num_new, key,
                      temperature, top_k)
    _generate = jax.jit(_generate, static_argnames=('num_new', 'top_k'))

    def gen(prompt_BxT, prompt_len_B, num_new, key, temperature=1.0, top_k=0):
      return _generate(state, prompt_BxT, prompt_len_B, key, temperature, num_new=int(num_new),
                       top_k=int(top_k))
  return ModelFns(predict=predict_batch, generate=gen)
