"""Objectives: `fn(model, batch, task) -> (loss, metrics)`; one registry entry each.

Every objective plugs into the same compiled train step (training/loop.py). Preference
objectives that need a frozen reference model receive it through their constructor.
"""
from __future__ import annotations

from typing import Callable, Dict

import jax
import jax.numpy as jnp
import optax

OBJECTIVES: Dict[str, Callable] = {}


def register_objective(name: str):
  def wrap(fn):
    OBJECTIVES[name] = fn
    return fn
  return wrap


@register_objective('regression_mse')
def regression_mse(model, batch, task):
  """Garg et al.'s loss: mean squared error of the read-out at every x position."""
  outputs_BxTx1 = model(task.model_inputs(batch))
  preds_BxN = task.predictions(outputs_BxTx1)
  mask_BxN = batch['point_mask_BxN']
  squared_BxN = jnp.square(preds_BxN - batch['ys_BxN']) * mask_BxN
  loss = jnp.sum(squared_BxN) / jnp.maximum(jnp.sum(mask_BxN), 1.0)
  # Error at the last in-context position, the usual headline number.
  last = jnp.sum(mask_BxN, axis=1).astype(jnp.int32) - 1
  last_error = jnp.mean(jnp.take_along_axis(squared_BxN, last[:, None], axis=1))
  return loss, {'last_point_mse': last_error}


@register_objective('next_token')
def next_token(model, batch, task):
  """Cross-entropy of every next token, weighted by the task's loss mask."""
  tokens_BxT = batch['tokens_BxT']
  logits_BxTxV = model(task.model_inputs(batch))
  targets_BxT1 = tokens_BxT[:, 1:]
  weights_BxT1 = batch['loss_mask_BxT'][:, 1:]
  nll_BxT1 = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV[:, :-1], targets_BxT1)
  total = jnp.maximum(jnp.sum(weights_BxT1), 1.0)
  loss = jnp.sum(nll_BxT1 * weights_BxT1) / total
  correct = (jnp.argmax(logits_BxTxV[:, :-1], -1) == targets_BxT1) * weights_BxT1
  return loss, {'token_accuracy': jnp.sum(correct) / total}
