"""Objectives are factories: `OBJECTIVES[name](config.objective, task)` returns a loss.

The loss is `loss(model, reference, batch, key) -> (scalar, metrics)`: `model` is the trained
model (its parameters receive the gradient), `reference` the frozen companion model or None,
`batch` the task's batch, `key` a PRNG key of this step (objectives that sample from the model
inside the compiled step use it). Every objective plugs into the same compiled train step
(training/step.py). Registry metadata: `needs_reference` (the run must start from another run
with `train.init_from`, whose parameters become the frozen reference).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from core import Registry

OBJECTIVES = Registry('objective', 'objective.name')


def register_objective(name: str, *, needs_reference: bool = False):
  return OBJECTIVES.register(name, needs_reference=needs_reference)


@register_objective('regression_mse')
def regression_mse(objective_config, task):
  """Garg et al.'s loss: mean squared error of the read-out at every x position."""
  del objective_config

  def loss(model, reference, batch, key):
    del reference, key
    outputs_BxTx1 = model(task.model_inputs(batch))
    preds_BxN = task.predictions(outputs_BxTx1)
    mask_BxN = batch['point_mask_BxN']
    squared_BxN = jnp.square(preds_BxN - batch['ys_BxN']) * mask_BxN
    value = jnp.sum(squared_BxN) / jnp.maximum(jnp.sum(mask_BxN), 1.0)
    # Error at the last in-context position, the usual headline number.
    last = jnp.sum(mask_BxN, axis=1).astype(jnp.int32) - 1
    last_error = jnp.mean(jnp.take_along_axis(squared_BxN, last[:, None], axis=1))
    return value, {'last_point_mse': last_error}
  return loss


@register_objective('next_token')
def next_token(objective_config, task):
  """Cross-entropy of every next token, weighted by the task's loss mask."""
  del objective_config

  def loss(model, reference, batch, key):
    del reference, key
    tokens_BxT = batch['tokens_BxT']
    logits_BxTxV = model(task.model_inputs(batch))
    targets_BxT1 = tokens_BxT[:, 1:]
    weights_BxT1 = batch['loss_mask_BxT'][:, 1:]
    nll_BxT1 = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV[:, :-1],
                                                               targets_BxT1)
    total = jnp.maximum(jnp.sum(weights_BxT1), 1.0)
    value = jnp.sum(nll_BxT1 * weights_BxT1) / total
    correct = (jnp.argmax(logits_BxTxV[:, :-1], -1) == targets_BxT1) * weights_BxT1
    return value, {'token_accuracy': jnp.sum(correct) / total}
  return loss


# Objectives defined in their own modules register themselves on import.
from training import preference  # noqa: E402,F401
from training import context_preference  # noqa: E402,F401
from data import classification as _classification  # noqa: E402

# Cross-entropy of the label at the query (bursty in-context classification).
register_objective('classification_ce')(_classification.classification_objective)
# Binary cross-entropy of the read-out logit (TART's logistic regression; data/logistic.py).
from data import logistic as _logistic  # noqa: E402
register_objective('logistic_bce')(_logistic.logistic_objective)
