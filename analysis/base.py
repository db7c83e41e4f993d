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
