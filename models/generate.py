"""Autoregressive sampling through the mixers' step forms (linear work per new token)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def sample_logits(key, logits_BxV, temperature, top_k: int):
  """Samples one token per row; temperature 0 is greedy, top_k 0 keeps every token."""
  if top_k:
    kth_B1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
    logits_BxV = jnp.where(logits_BxV < kth_B1, -jnp.inf, logits_BxV)
  greedy_B = jnp.argmax(logits_BxV, axis=-1)
  safe_temperature = jnp.maximum(temperature, 1e-6)
  sampled_B = jax.random.categorical(key, logits_BxV / safe_temperature, axis=-1)
  return jnp.where(temperature > 0, sampled_B, greedy_B).astype(jnp.int32)


def generate(model, prompt_BxT, prompt_len_B, num_new: int, key, temperature=1.0,
             top_k: int = 0):
  """Continues each row after its own prompt length.

  Returns tokens_Bx(T+num_new): positions < prompt_len_B are the prompt, later ones sampled.
  The prompt is consumed through the same step form (a prefill by recurrence), so every
  mixer -- KV cache or recurrent state -- costs O(1) steps per token, never a re-run of the
  whole prefix.
  """
  batch, prompt_width = prompt_BxT.shape
  total = prompt_width + num_new
  if total > model.max_len:
    raise ValueError(f'prompt width {prompt_width} + num_new {num_new} = {total} exceeds the '
                     f'model context of {model.max_len} positions')
  tokens_BxL = jnp.concatenate(
      [prompt_BxT.astype(jnp.int32), jnp.zeros((batch, num_new), jnp.int32)], axis=1)
  prompt_len_B = jnp.asarray(prompt_len_B, jnp.int32)

  def body(carry, t):
    tokens_BxL, state = carry
    logits_BxV, state = model.step(tokens_BxL[:, t], state)
    new_B = sample_logits(jax.random.fold_in(key, t), logits_BxV, temperature, top_k)
    keep_B = tokens_BxL[:, t + 1]
    next_B = jnp.where(t + 1 >= prompt_len_B, new_B, keep_B)
    tokens_BxL = jax.lax.dynamic_update_slice(tokens_BxL, next_B[:, None], (0, t + 1))
    return (tokens_BxL, state), None

  (tokens_BxL, _), _ = jax.lax.scan(body, (tokens_BxL, model.init_state(batch)),
                                    jnp.arange(total - 1))
  return tokens_BxL
