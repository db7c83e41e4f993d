"""Preferring in-context answers: DPO (and relatives) whose judge prefers the label the
prompt's context gives over the label the weights memorised.

On bursty classification (data/classification.py) a prompt of the `in_context_permuted` split
shows training classes under a random label permutation: the context says the query's class
carries label `query_label_B` (the in-context answer), while the training distribution always
gave it `query_class_B % num_labels` (the in-weights answer). The judge is that program: the
in-context answer is chosen, the in-weights answer rejected; prompts where the permutation
leaves the query's label unchanged (the two agree) are dropped and counted. A completion is
the one label token at the query, so every log-probability, and the KL between the policy's
and the reference's label distributions at the query, is exact (no sampling).

Objective `context_preference` (needs a frozen reference: `train.init_from`), keys:
`loss_type`, `beta`, `label_smoothing`, `gamma`, `sft_weight` as for `preference`
(training/preference_losses.py), and `eval_prompts`. The scheduled evaluation adds, on fixed
label-permuted prompts, the rate at which the policy's greedy label is the in-context answer
(`ic_answer_rate`) or the in-weights one (`iw_answer_rate`), the reference's rates, and the
exact mean KL(policy || reference) at the query (`kl`); the task's own scheduled metrics
(`in_context_accuracy` on novel classes, `in_weights_accuracy`) come with them.
"""
from __future__ import annotations

from typing import Any, Dict

import jax
import jax.numpy as jnp

from core import require
from training.objectives import register_objective

DEFAULTS = dict(loss_type='sigmoid', beta=0.1, label_smoothing=0.0, gamma=0.5, sft_weight=0.0,
                eval_prompts=512)
SPLIT = 'in_context_permuted'


def validate(oc, task) -> Dict[str, Any]:
  from training.preference import _check_keys
  from training.preference_losses import LOSS_TYPES
  cfg = _check_keys(oc, DEFAULTS, 'context_preference')
  require(cfg['loss_type'] in LOSS_TYPES, 'objective.loss_type', cfg['loss_type'],
          f'known loss types: {", ".join(LOSS_TYPES)}')
  require(isinstance(cfg['beta'], (int, float)) and 0 < cfg['beta'] < float('inf'),
          'objective.beta', cfg['beta'], 'must be a finite number > 0')
  require(0 <= cfg['label_smoothing'] < 0.5, 'objective.label_smoothing',
          cfg['label_smoothing'], 'must be in [0, 0.5)')
  require(cfg['sft_weight'] >= 0, 'objective.sft_weight', cfg['sft_weight'], 'must be >= 0')
  require(isinstance(cfg['eval_prompts'], int) and cfg['eval_prompts'] >= 1,
          'objective.eval_prompts', cfg['eval_prompts'], 'must be an integer >= 1')
  return cfg


def answers(task, batch):
  """(in-context label_B, in-weights label_B, valid_B): the two answers of each prompt and
  whether they differ."""
  ic_B = batch['query_label_B']
  iw_B = batch['query_class_B'] % task.num_labels
  return ic_B, iw_B, (ic_B != iw_B).astype(jnp.float32)


def query_log_probs(model, task, batch):
  """log p(label) at the query, [B, L] (float32)."""
  outputs_BxTxL = model(task.model_inputs(batch))
  return jax.nn.log_softmax(outputs_BxTxL[:, -1].astype(jnp.float32), axis=-1)


def _pick(log_probs_BxL, labels_B):
  return jnp.take_along_axis(log_probs_BxL, labels_B[:, None], axis=1)[:, 0]


@register_objective('context_preference', needs_reference=True)
def context_preference(objective_config, task):
  """DPO-family loss on (in-context answer, in-weights answer) pairs; see the module
  docstring."""
  from training.preference import _frozen
  from training.preference_losses import preference_loss, preference_metrics
  cfg = validate(objective_config, task)

  def loss(model, reference, batch, key):
    # The step's batch is of the training distribution; the pairs need label-permuted
    # prompts, drawn here as many as the batch holds.
    prompts = task.sample_split(key, batch['query_label_B'].shape[0], SPLIT)
    ic_B, iw_B, valid_B = answers(task, prompts)
    lp = query_log_probs(model, task, prompts)
    ref = jax.lax.stop_gradient(query_log_probs(_frozen(reference), task, prompts))
    pc, pr, rc, rr = _pick(lp, ic_B), _pick(lp, iw_B), _pick(ref, ic_B), _pick(ref, iw_B)
    out = preference_loss(cfg['loss_type'], pc, pr, rc, rr, beta=cfg['beta'],
                          label_smoothing=cfg['label_smoothing'], gamma=cfg['gamma'],
                          chosen_avg_logps=pc, rejected_avg_logps=pr, ref_chosen_avg_logps=rc,
                          ref_rejected_avg_logps=rr, chosen_nll=-pc,
                          kl=jax.lax.stop_gradient(jnp.mean(pc - rc)), mask=valid_B)
    losses_B = out['losses'] + cfg['sft_weight'] * (-pc)
    value = jnp.sum(losses_B * valid_B) / jnp.maximum(jnp.sum(valid_B), 1.0)
    metrics = preference_metrics(out, pc, pr, valid_B)
    metrics['pairs/valid'] = jnp.mean(valid_B)
    metrics['kl'] = jax.lax.stop_gradient(exact_kl(lp, ref))
    return value, metrics

  def evaluate(model, reference, batch, key):
    del batch
    prompts = task.sample_split(jax.random.fold_in(key, 7), cfg['eval_prompts'], SPLIT)
    ic_B, iw_B, valid_B = answers(task, prompts)
    lp = query_log_probs(model, task, prompts)
    ref = query_log_probs(reference, task, prompts)
    count = jnp.maximum(jnp.sum(valid_B), 1.0)
    rate = lambda log_probs, labels: jnp.sum(
        (jnp.argmax(log_probs, -1) == labels) * valid_B) / count
    return {'ic_answer_rate': rate(lp, ic_B), 'iw_answer_rate': rate(lp, iw_B),
            'reference_ic_answer_rate': rate(ref, ic_B),
            'reference_iw_answer_rate': rate(ref, iw_B), 'kl': exact_kl(lp, ref),
            'ic_logp_margin': jnp.sum((_pick(lp, ic_B) - _pick(lp, iw_B)) * valid_B) / count}

  loss.evaluate = evaluate
  loss.eval_prompts = cfg['eval_prompts']
  loss.settings = cfg
  return loss


def exact_kl(log_probs_BxL, ref_log_probs_BxL):
  """Mean over prompts of KL(p || q) between the label distributions at the query."""
  return jnp.mean(jnp.sum(jnp.exp(log_probs_BxL) * (log_probs_BxL - ref_log_probs_BxL), -1))
