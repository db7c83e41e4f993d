"""Preference fine-tuning: the `preference` objective (DPO and its relatives) on tasks whose
judge is a program.

Each step, for B prompts of the task (a REGBENCH prompt cut after `prefix_strings` strings),
two completions of at most `completion_len` tokens are sampled inside the compiled step through
the mixers' step forms: from the current policy (`mode='on_policy'`) or from the frozen
reference (`mode='offline'`: prompt i of a fixed set of `num_offline_prompts` prompts always
gets the same two reference samples, so training sees one fixed dataset of pairs, regenerated
on the device rather than read from the host; `python -m training.preference --workdir DIR`
exports it). The task's judge scores both (exact: the automaton); optional Bradley-Terry noise
(`bt_temperature`) turns scores into labels; pairs whose completions are identical or tied are
dropped (their count is the metric `pairs/dropped`), never trained on silently. The loss is
`training.preference_losses.preference_loss` over summed (and, where the loss type says so,
length-averaged) completion log-probabilities, plus an optional weighted SFT term on the
chosen completion. The reference's log-probabilities are computed outside the gradient.

Metrics (TRL's names): rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins,
logps/chosen, logps/rejected; plus pairs/valid. The scheduled evaluation adds the judge's
win rate of policy samples against reference samples, the accept rates, and an estimate of
KL(policy || reference) from policy samples.
"""
from __future__ import annotations

from typing import Any, Dict

import jax
import jax.numpy as jnp
from flax import nnx

from core import ConfigError, require
from training.objectives import register_objective

MODES = ('on_policy', 'offline')
DEFAULTS = dict(
    loss_type='sigmoid',       # see training/preference_losses.py LOSS_TYPES
    beta=0.1,
    label_smoothing=0.0,
    gamma=0.5,                 # SimPO's target margin
    sft_weight=0.0,            # weight of an SFT term (chosen NLL per token) added to any loss
    mode='on_policy',          # on_policy | offline
    num_offline_prompts=2048,  # offline: size of the fixed set of prompts (and pairs)
    temperature=1.0,           # sampling temperature of the completions
    completion_len=0,          # tokens sampled per completion (0: max_string_len + 1)
    prefix_strings=5,          # strings of the prompt before the completion
    judge='accept',            # accept | likelihood | length (see the task's judge)
    bt_temperature=0.0,        # Bradley-Terry label noise (0: the judge's exact ordering)
    eval_prompts=256,          # prompts of the win-rate / KL evaluation
)


def validate(oc, task) -> Dict[str, Any]:
  from training.preference_losses import LOSS_TYPES
  cfg = {**DEFAULTS, **{k: v for k, v in oc.items() if k != 'name'}}
  unknown = sorted(set(cfg) - set(DEFAULTS))
  require(not unknown, f'objective.{unknown[0] if unknown else ""}', '...',
          f'not a key of the preference objective; known: {", ".join(sorted(DEFAULTS))}')
  require(cfg['loss_type'] in LOSS_TYPES, 'objective.loss_type', cfg['loss_type'],
          f'known loss types: {", ".join(LOSS_TYPES)}')
  require(isinstance(cfg['beta'], (int, float)) and cfg['beta'] > 0 and cfg['beta'] < float('inf'),
          'objective.beta', cfg['beta'], 'must be a finite number > 0')
  require(0 <= cfg['label_smoothing'] < 0.5, 'objective.label_smoothing',
          cfg['label_smoothing'], 'must be in [0, 0.5)')
  require(cfg['sft_weight'] >= 0, 'objective.sft_weight', cfg['sft_weight'], 'must be >= 0')
  require(cfg['mode'] in MODES, 'objective.mode', cfg['mode'], f'allowed: {", ".join(MODES)}')
  require(cfg['temperature'] > 0, 'objective.temperature', cfg['temperature'], 'must be > 0')
  require(cfg['bt_temperature'] >= 0, 'objective.bt_temperature', cfg['bt_temperature'],
          'must be >= 0 (0: no label noise)')
  require(isinstance(cfg['num_offline_prompts'], int) and cfg['num_offline_prompts'] >= 1,
          'objective.num_offline_prompts', cfg['num_offline_prompts'], 'must be an integer >= 1')
  require(isinstance(cfg['eval_prompts'], int) and cfg['eval_prompts'] >= 1,
          'objective.eval_prompts', cfg['eval_prompts'], 'must be an integer >= 1')
  if not hasattr(task, 'preference_prompts'):
    raise ConfigError(f'config.objective.name=\'preference\' is invalid: task {task.name!r} '
                      f'has no preference judge')
  task.check_preference_config(cfg)
  return cfg


def _frozen(model):
  """The same model with its parameters outside the gradient (for sampling)."""
  graphdef, state = nnx.split(model)
  return nnx.merge(graphdef, jax.lax.stop_gradient(state))


def completion_logps(model, tokens_BxL, start_B, mask_BxC):
  """Per-sequence sum of log p(token) over the completion, and the token count.

  The completion's token c sits at position start_B + c; position p's logits predict p + 1.
  """
  logits_BxLxV = model(tokens_BxL)
  log_probs_BxLxV = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
  num_c = mask_BxC.shape[1]
  positions_BxC = start_B[:, None] + jnp.arange(num_c)[None, :]
  safe_BxC = jnp.clip(positions_BxC, 1, tokens_BxL.shape[1] - 1)
  targets_BxC = jnp.take_along_axis(tokens_BxL, safe_BxC, axis=1)
  lp_BxCxV = jnp.take_along_axis(log_probs_BxLxV, (safe_BxC - 1)[..., None], axis=1)
  token_lp_BxC = jnp.take_along_axis(lp_BxCxV, targets_BxC[..., None], axis=2)[..., 0]
  return jnp.sum(token_lp_BxC * mask_BxC, axis=1), jnp.sum(mask_BxC, axis=1)


def sample_pair(sampler, task, prompts, key, cfg):
  """Two completions per prompt from `sampler`: (tokens_2xBxL, completion masks 2xBxC)."""
  from models.generate import generate
  tokens, start = prompts['tokens_BxW'], prompts['prompt_len_B']
  batch = tokens.shape[0]
  both = jnp.concatenate([tokens, tokens], axis=0)
  starts = jnp.concatenate([start, start], axis=0)
  sequences = generate(sampler, both, starts, cfg['completion_len'], key, cfg['temperature'])
  completions, mask = task.completion_tokens(sequences, starts, cfg['completion_len'])
  split = lambda x: jnp.stack([x[:batch], x[batch:]])
  return split(sequences), split(completions), split(mask)


OFFLINE_VERSION = 1
OFFLINE_SALT = 17


def offline_pairs(task, reference, index_B, cfg):
  """Prompt i of the fixed offline set and its two reference samples: a function of i (and the
  frozen reference) only, so every step sees the same dataset of pairs."""
  prompts = task.offline_prompts(index_B, cfg)
  keys_B = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(OFFLINE_SALT), i))(index_B)
  seqs, comps, masks = jax.vmap(
      lambda p, k: sample_pair(reference, task, jax.tree.map(lambda a: a[None], p), k, cfg))(
          prompts, keys_B)
  return (prompts,) + tuple(jnp.moveaxis(x[:, :, 0], 0, 1) for x in (seqs, comps, masks))


@register_objective('preference', needs_reference=True)
def preference(objective_config, task):
  """DPO and its relatives over pairs sampled in the step and judged by the task's program."""
  from training.preference_losses import preference_loss, preference_metrics
  cfg = validate(objective_config, task)
  cfg['completion_len'] = cfg['completion_len'] or task.default_completion_len()
  offline = cfg['mode'] == 'offline'

  def pairs(model, reference, batch, key):
    """Sequences of the chosen (index 0) and rejected (1) completion, masks and validity."""
    k_sample, k_label, k_prompt = jax.random.split(key, 3)
    if offline:
      index_B = jax.random.randint(k_prompt, (batch['tokens_BxT'].shape[0],), 0,
                                   cfg['num_offline_prompts'])
      prompts, seqs, comps, masks = offline_pairs(task, reference, index_B, cfg)
    else:
      prompts = task.preference_prompts(batch, cfg)
      seqs, comps, masks = sample_pair(_frozen(model), task, prompts, k_sample, cfg)
    rewards_2xB = jnp.stack([task.judge(prompts, comps[i], masks[i], cfg) for i in range(2)])
    first_wins_B, valid_B = task.preference_labels(k_label, rewards_2xB, comps, masks, cfg)

    def order(x):
      first = _expand(first_wins_B, x[0])
      return jnp.where(first, x[0], x[1]), jnp.where(first, x[1], x[0])

    chosen_seq, rejected_seq = order(seqs)
    chosen_mask, rejected_mask = order(masks)
    return (prompts, chosen_seq, rejected_seq, chosen_mask, rejected_mask, valid_B,
            rewards_2xB)

  def loss(model, reference, batch, key):
    prompts, chosen_seq, rejected_seq, chosen_mask, rejected_mask, valid_B, rewards = pairs(
        model, reference, batch, key)
    start = prompts['prompt_len_B']
    pc, nc = completion_logps(model, chosen_seq, start, chosen_mask)
    pr, nr = completion_logps(model, rejected_seq, start, rejected_mask)
    ref = _frozen(reference)
    rc, _ = completion_logps(ref, chosen_seq, start, chosen_mask)
    rr, _ = completion_logps(ref, rejected_seq, start, rejected_mask)
    rc, rr = jax.lax.stop_gradient(rc), jax.lax.stop_gradient(rr)
    avg = lambda total, count: total / jnp.maximum(count, 1)
    # KTO's reference point: KL(policy || reference) estimated on the sampled completions.
    kl = jnp.mean(0.5 * ((pc - rc) + (pr - rr)))
    out = preference_loss(cfg['loss_type'], pc, pr, rc, rr, beta=cfg['beta'],
                          label_smoothing=cfg['label_smoothing'], gamma=cfg['gamma'],
                          chosen_avg_logps=avg(pc, nc), rejected_avg_logps=avg(pr, nr),
                          ref_chosen_avg_logps=avg(rc, nc),
                          ref_rejected_avg_logps=avg(rr, nr), chosen_nll=-avg(pc, nc),
                          kl=jax.lax.stop_gradient(kl), mask=valid_B)
    avg_c = avg(pc, nc)
    losses_B = out['losses'] + cfg['sft_weight'] * (-avg_c)
    count = jnp.maximum(jnp.sum(valid_B), 1.0)
    value = jnp.sum(losses_B * valid_B) / count
    metrics = preference_metrics(out, pc, pr, valid_B)
    metrics['pairs/valid'] = jnp.mean(valid_B)
    metrics['pairs/dropped'] = jnp.sum(1.0 - valid_B)
    metrics['judge/sample_reward'] = jnp.mean(rewards)
    return value, metrics

  def evaluate(model, reference, batch, key):
    """Judge win rate of policy vs reference samples, accept rates, KL(policy || ref)."""
    prompts = task.preference_prompts(batch, cfg)
    k_policy, k_ref = jax.random.split(key)
    seqs_p, comps_p, masks_p = sample_pair(model, task, prompts, k_policy, cfg)
    seqs_r, comps_r, masks_r = sample_pair(reference, task, prompts, k_ref, cfg)
    reward_p = task.judge(prompts, comps_p[0], masks_p[0], cfg)
    reward_r = task.judge(prompts, comps_r[0], masks_r[0], cfg)
    start = prompts['prompt_len_B']
    lp_policy, _ = completion_logps(model, seqs_p[0], start, masks_p[0])
    lp_ref, _ = completion_logps(reference, seqs_p[0], start, masks_p[0])
    win = jnp.where(reward_p > reward_r, 1.0, jnp.where(reward_p == reward_r, 0.5, 0.0))
    return {'win_rate': jnp.mean(win), 'policy_reward': jnp.mean(reward_p),
            'reference_reward': jnp.mean(reward_r), 'kl': jnp.mean(lp_policy - lp_ref)}

  loss.evaluate = evaluate
  loss.eval_prompts = cfg['eval_prompts']
  return loss


def _expand(mask_B, like):
  return mask_B.reshape(mask_B.shape + (1,) * (like.ndim - 1))


def export_offline_pairs(workdir: str, batch_size: int = 256, log=print) -> str:
  """Writes the offline dataset of a preference run (every prompt of the fixed set, its two
  reference completions, their judge rewards and labels) to
  <workdir>/offline_pairs/v<OFFLINE_VERSION>.npz; returns the path."""
  import hashlib
  import json
  import os
  import numpy as np
  from training.init_from import ReferenceStore
  from training.loop import load_config
  from training.setup import make_setup
  config = load_config(workdir)
  setup = make_setup(config, jax.devices()[:1])
  task = setup.task
  cfg = validate(config.objective, task)
  cfg['completion_len'] = cfg['completion_len'] or task.default_completion_len()
  store = ReferenceStore(workdir, setup.mesh)
  if not store.exists():
    raise ConfigError(f'{workdir} holds no frozen reference (reference/params): train it first')
  frozen, shared = store.restore()
  params = frozen if shared else jax.tree.map(lambda x: x[0], frozen)
  graphdef, _, rest = nnx.split(setup.model, nnx.Param, ...)
  reference = nnx.merge(graphdef, params, rest)

  @jax.jit
  def chunk(index_B, key):
    prompts, seqs, comps, masks = offline_pairs(task, reference, index_B, cfg)
    rewards = jnp.stack([task.judge(prompts, comps[i], masks[i], cfg) for i in range(2)])
    first_wins, valid = task.preference_labels(key, rewards, comps, masks, cfg)
    return dict(prompt_tokens=prompts['tokens_BxW'], prompt_len=prompts['prompt_len_B'],
                dfa_id=prompts['dfa_id_B'], completions=jnp.moveaxis(comps, 0, 1),
                masks=jnp.moveaxis(masks, 0, 1), rewards=rewards.T, first_wins=first_wins,
                valid=valid)

  total = cfg['num_offline_prompts']
  parts = []
  for start in range(0, total, batch_size):
    index = jnp.arange(start, min(start + batch_size, total), dtype=jnp.int32)
    parts.append(jax.device_get(chunk(index, jax.random.fold_in(jax.random.key(0), start))))
  arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  meta = dict(version=OFFLINE_VERSION, config=json.loads(config.to_json()),
              num_prompts=total, completion_len=cfg['completion_len'])
  digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
  directory = os.path.join(workdir, 'offline_pairs')
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f'v{OFFLINE_VERSION}.npz')
  np.savez_compressed(path + '.tmp.npz', meta=json.dumps({**meta, 'digest': digest}), **arrays)
  os.replace(path + '.tmp.npz', path)
  kept = float(np.mean(arrays['valid']))
  log(f'wrote {path}: {total} prompts, {kept:.1%} of pairs kept (the rest identical or tied), '
      f'accept/reward mean {float(np.mean(arrays["rewards"])):.3f}')
  return path


if __name__ == '__main__':
  import argparse
  import sys
  parser = argparse.ArgumentParser(description='Export the offline pairs of a preference run.')
  parser.add_argument('--workdir', required=True)
  args = parser.parse_args()
  from training.workdir import WorkdirError
  try:
    export_offline_pairs(args.workdir)
  except (ConfigError, WorkdirError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
