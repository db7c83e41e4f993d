"""Preference fine-tuning on tasks whose judge is a program: the `preference` objective (DPO
and its relatives) and `sft` (filtered SFT on judge-accepted completions).

Each step, for B prompts of the task (a REGBENCH prompt cut after `prefix_strings` strings),
two completions of at most `completion_len` tokens are drawn:
  * `mode='on_policy'`: sampled inside the compiled step from the current policy through the
    mixers' step forms (stop-gradient);
  * `mode='offline'`: B rows of a frozen dataset of prompts and two reference completions,
    sampled once by `python -m training.preference_data` (a TFDS array_record dataset,
    training/preference_data.py) and held on the device; `objective.offline_data` names it.
The task's judge scores both (exact: the automaton; by default 'valid', which needs a whole
string of at least `min_completion_len` symbols, so a policy cannot win by emitting one symbol).
`preference`: optional Bradley-Terry noise (`bt_temperature`) turns scores into labels; pairs
whose completions are identical or tied are dropped (`pairs/dropped`), never trained on
silently; the loss is `training.preference_losses.preference_loss` over summed (and, where the
loss type says so, length-averaged) completion log-probabilities, plus an optional weighted SFT
term on the chosen completion. The reference's log-probabilities are outside the gradient.
`sft`: the per-token cross-entropy of every completion the judge accepts (best-of-2 filtered
SFT, no negative gradient; on-policy this is rejection-sampling fine-tuning).

Training metrics (TRL's names where they exist): rewards/{chosen,rejected,accuracies,margins},
logps/{chosen,rejected}, kl (on-policy: the mean of log pi(y) - log pi_ref(y) over the step's
policy samples, a sampled estimate of the sequence-level KL(pi || pi_ref)), judge/score (mean
judge reward of the step's samples), judge/accepted, completion/length (symbols),
pairs/valid, pairs/dropped. The scheduled evaluation adds, on fresh samples at temperature 1:
the judge's win rate of policy samples against reference samples, policy and reference judge
score, accept rate and completion length, and `kl` estimated from policy samples.
"""
from __future__ import annotations

from typing import Any, Dict

import jax
import jax.numpy as jnp
from flax import nnx

from core import ConfigError, require
from training.objectives import register_objective

MODES = ('on_policy', 'offline')
# Keys shared by `preference` and `sft` (how completions are drawn and judged).
SAMPLING_DEFAULTS = dict(
    mode='on_policy',          # on_policy | offline
    offline_data='',           # offline: the dataset directory (python -m training.preference_data)
    num_offline_prompts=2048,  # offline: prompts of the dataset (read from it; checked)
    temperature=1.0,           # sampling temperature of the on-policy completions
    completion_len=0,          # tokens sampled per completion (0: max_string_len + 1)
    prefix_strings=5,          # strings of the prompt before the completion
    judge='valid',             # valid | likelihood | accept | length (see the task's judge)
    min_completion_len=0,      # valid / likelihood: fewest symbols of a string (0: task default)
    eval_prompts=256,          # prompts of the win-rate / KL evaluation
)
DEFAULTS = dict(
    loss_type='sigmoid',       # see training/preference_losses.py LOSS_TYPES
    beta=0.1,
    label_smoothing=0.0,
    gamma=0.5,                 # SimPO's target margin
    sft_weight=0.0,            # weight of an SFT term (chosen NLL per token) added to any loss
    bt_temperature=0.0,        # Bradley-Terry label noise (0: the judge's exact ordering)
    **SAMPLING_DEFAULTS,
)


def _check_keys(oc, defaults, objective):
  cfg = {**defaults, **{k: v for k, v in oc.items() if k != 'name'}}
  unknown = sorted(set(cfg) - set(defaults))
  require(not unknown, f'objective.{unknown[0] if unknown else ""}', '...',
          f'not a key of the {objective} objective; known: {", ".join(sorted(defaults))}')
  return cfg


def _validate_sampling(cfg, task, objective):
  require(cfg['mode'] in MODES, 'objective.mode', cfg['mode'], f'allowed: {", ".join(MODES)}')
  require(cfg['temperature'] > 0, 'objective.temperature', cfg['temperature'], 'must be > 0')
  require(isinstance(cfg['num_offline_prompts'], int) and cfg['num_offline_prompts'] >= 1,
          'objective.num_offline_prompts', cfg['num_offline_prompts'], 'must be an integer >= 1')
  require(isinstance(cfg['eval_prompts'], int) and cfg['eval_prompts'] >= 1,
          'objective.eval_prompts', cfg['eval_prompts'], 'must be an integer >= 1')
  require(isinstance(cfg['offline_data'], str), 'objective.offline_data', cfg['offline_data'],
          'must be a directory path')
  if not hasattr(task, 'preference_prompts'):
    raise ConfigError(f'config.objective.name={objective!r} is invalid: task {task.name!r} '
                      f'has no preference judge')
  task.check_preference_config(cfg)
  cfg['completion_len'] = cfg['completion_len'] or task.default_completion_len()
  return cfg


def validate(oc, task) -> Dict[str, Any]:
  """The preference objective's settings (defaults filled in); ConfigError on a bad one."""
  from training.preference_losses import LOSS_TYPES
  cfg = _check_keys(oc, DEFAULTS, 'preference')
  require(cfg['loss_type'] in LOSS_TYPES, 'objective.loss_type', cfg['loss_type'],
          f'known loss types: {", ".join(LOSS_TYPES)}')
  require(isinstance(cfg['beta'], (int, float)) and cfg['beta'] > 0 and cfg['beta'] < float('inf'),
          'objective.beta', cfg['beta'], 'must be a finite number > 0')
  require(0 <= cfg['label_smoothing'] < 0.5, 'objective.label_smoothing',
          cfg['label_smoothing'], 'must be in [0, 0.5)')
  require(cfg['sft_weight'] >= 0, 'objective.sft_weight', cfg['sft_weight'], 'must be >= 0')
  require(cfg['bt_temperature'] >= 0, 'objective.bt_temperature', cfg['bt_temperature'],
          'must be >= 0 (0: no label noise)')
  return _validate_sampling(cfg, task, 'preference')


def validate_sft(oc, task) -> Dict[str, Any]:
  """The sft objective's settings (defaults filled in); ConfigError on a bad one. Keys of the
  preference losses may be present (one config serves both objectives) but not changed."""
  settings = {k: v for k, v in oc.items() if k != 'name'}
  for key in sorted(set(DEFAULTS) - set(SAMPLING_DEFAULTS)):
    if key in settings:
      require(settings.pop(key) == DEFAULTS[key], f'objective.{key}', oc[key],
              'a preference-loss key: the sft objective does not use it')
  return _validate_sampling(_check_keys(settings, SAMPLING_DEFAULTS, 'sft'), task, 'sft')


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


def sample_pair(sampler, task, prompts, key, cfg, temperature=None):
  """Two completions per prompt from `sampler`: (tokens_2xBxL, completions 2xBxC, masks
  2xBxC)."""
  from models.generate import generate
  tokens, start = prompts['tokens_BxW'], prompts['prompt_len_B']
  batch = tokens.shape[0]
  both = jnp.concatenate([tokens, tokens], axis=0)
  starts = jnp.concatenate([start, start], axis=0)
  temperature = cfg['temperature'] if temperature is None else temperature
  sequences = generate(sampler, both, starts, cfg['completion_len'], key, temperature)
  completions, mask = task.completion_tokens(sequences, starts, cfg['completion_len'])
  split = lambda x: jnp.stack([x[:batch], x[batch:]])
  return split(sequences), split(completions), split(mask)


def place_completions(task, prompts, completions_2xBxC):
  """(sequences_2xBxL, masks_2xBxC) of dataset completions written after each prompt."""
  tokens_BxW, start_B = prompts['tokens_BxW'], prompts['prompt_len_B']
  batch, width = tokens_BxW.shape
  num_c = completions_2xBxC.shape[-1]
  rows_Bx1 = jnp.arange(batch)[:, None]
  positions_BxC = start_B[:, None] + jnp.arange(num_c)[None, :]
  base_BxL = jnp.concatenate([tokens_BxW, jnp.zeros((batch, num_c), tokens_BxW.dtype)], axis=1)
  seqs = jnp.stack([base_BxL.at[rows_Bx1, positions_BxC].set(c) for c in completions_2xBxC])
  masks = jnp.stack([task.completion_tokens(x, start_B, num_c)[1] for x in seqs])
  return seqs, masks


def _draw(task, cfg, dataset):
  """`draw(model, batch, key) -> (prompts, sequences_2xBxL, completions_2xBxC, masks_2xBxC,
  rewards_2xB)`: the step's two judged completions per prompt (module docstring)."""

  def draw(model, batch, key):
    k_sample, k_index = jax.random.split(key)
    if dataset is not None:
      index_B = jax.random.randint(k_index, (batch['tokens_BxT'].shape[0],), 0,
                                   dataset['dfa_id_N'].shape[0])
      prompts = {'tokens_BxW': dataset['prompt_tokens_NxW'][index_B],
                 'prompt_len_B': dataset['prompt_len_N'][index_B],
                 'dfa_id_B': dataset['dfa_id_N'][index_B]}
      comps = jnp.moveaxis(dataset['completions_Nx2xC'][index_B], 1, 0)
      seqs, masks = place_completions(task, prompts, comps)
    else:
      prompts = task.preference_prompts(batch, cfg)
      seqs, comps, masks = sample_pair(_frozen(model), task, prompts, k_sample, cfg)
    rewards_2xB = jnp.stack([task.judge(prompts, comps[i], masks[i], cfg) for i in range(2)])
    return prompts, seqs, comps, masks, rewards_2xB
  return draw


def _sample_metrics(task, cfg, comps_2xBxC, rewards_2xB):
  return {'judge/score': jnp.mean(rewards_2xB),
          'judge/accepted': jnp.mean(task.judge_accepts(rewards_2xB.reshape(-1), cfg)),
          'completion/length': jnp.mean(
              task.completion_length(comps_2xBxC.reshape(-1, comps_2xBxC.shape[-1]))
              .astype(jnp.float32))}


def _load_dataset(task, cfg):
  if cfg['mode'] != 'offline':
    return None
  from training import preference_data
  return preference_data.load_for_training(task, cfg)


def _attach_evaluation(loss, task, cfg):
  """Adds `loss.evaluate(model, reference, batch, key)`: judge win rate of policy against
  reference samples, judge scores, accept rates and lengths, and KL(policy || reference)
  estimated from policy samples; all on fresh samples at temperature 1."""

  def evaluate(model, reference, batch, key):
    prompts = task.preference_prompts(batch, cfg)
    k_policy, k_ref = jax.random.split(key)
    seqs_p, comps_p, masks_p = sample_pair(model, task, prompts, k_policy, cfg, 1.0)
    _, comps_r, masks_r = sample_pair(reference, task, prompts, k_ref, cfg, 1.0)
    reward_p = task.judge(prompts, comps_p[0], masks_p[0], cfg)
    reward_r = task.judge(prompts, comps_r[0], masks_r[0], cfg)
    start = prompts['prompt_len_B']
    lp_policy, _ = completion_logps(model, seqs_p[0], start, masks_p[0])
    lp_ref, _ = completion_logps(reference, seqs_p[0], start, masks_p[0])
    win = jnp.where(reward_p > reward_r, 1.0, jnp.where(reward_p == reward_r, 0.5, 0.0))
    length = lambda c: jnp.mean(task.completion_length(c).astype(jnp.float32))
    return {'win_rate': jnp.mean(win), 'policy_reward': jnp.mean(reward_p),
            'reference_reward': jnp.mean(reward_r),
            'policy_accept_rate': jnp.mean(task.judge_accepts(reward_p, cfg)),
            'reference_accept_rate': jnp.mean(task.judge_accepts(reward_r, cfg)),
            'policy_length': length(comps_p[0]), 'reference_length': length(comps_r[0]),
            'kl': jnp.mean(lp_policy - lp_ref)}

  loss.evaluate = evaluate
  loss.eval_prompts = cfg['eval_prompts']
  loss.settings = cfg
  return loss


@register_objective('preference', needs_reference=True)
def preference(objective_config, task):
  """DPO and its relatives over pairs judged by the task's program."""
  from training.preference_losses import preference_loss, preference_metrics
  cfg = validate(objective_config, task)
  draw = _draw(task, cfg, _load_dataset(task, cfg))
  on_policy = cfg['mode'] == 'on_policy'

  def loss(model, reference, batch, key):
    k_draw, k_label = jax.random.split(key)
    prompts, seqs, comps, masks, rewards = draw(model, batch, k_draw)
    first_wins_B, valid_B = task.preference_labels(k_label, rewards, comps, masks, cfg)

    def order(x):
      first = _expand(first_wins_B, x[0])
      return jnp.where(first, x[0], x[1]), jnp.where(first, x[1], x[0])

    chosen_seq, rejected_seq = order(seqs)
    chosen_mask, rejected_mask = order(masks)
    start = prompts['prompt_len_B']
    pc, nc = completion_logps(model, chosen_seq, start, chosen_mask)
    pr, nr = completion_logps(model, rejected_seq, start, rejected_mask)
    ref = _frozen(reference)
    rc, _ = completion_logps(ref, chosen_seq, start, chosen_mask)
    rr, _ = completion_logps(ref, rejected_seq, start, rejected_mask)
    rc, rr = jax.lax.stop_gradient(rc), jax.lax.stop_gradient(rr)
    avg = lambda total, count: total / jnp.maximum(count, 1)
    # The mean log ratio over the step's samples: on-policy, a sampled estimate of
    # KL(policy || reference); KTO's reference point in both modes.
    kl = jnp.mean(0.5 * ((pc - rc) + (pr - rr)))
    out = preference_loss(cfg['loss_type'], pc, pr, rc, rr, beta=cfg['beta'],
                          label_smoothing=cfg['label_smoothing'], gamma=cfg['gamma'],
                          chosen_avg_logps=avg(pc, nc), rejected_avg_logps=avg(pr, nr),
                          ref_chosen_avg_logps=avg(rc, nc),
                          ref_rejected_avg_logps=avg(rr, nr), chosen_nll=-avg(pc, nc),
                          kl=jax.lax.stop_gradient(kl), mask=valid_B)
    losses_B = out['losses'] + cfg['sft_weight'] * (-avg(pc, nc))
    count = jnp.maximum(jnp.sum(valid_B), 1.0)
    value = jnp.sum(losses_B * valid_B) / count
    metrics = preference_metrics(out, pc, pr, valid_B)
    metrics['pairs/valid'] = jnp.mean(valid_B)
    metrics['pairs/dropped'] = jnp.sum(1.0 - valid_B)
    metrics.update(_sample_metrics(task, cfg, comps, rewards))
    if on_policy:
      metrics['kl'] = jax.lax.stop_gradient(kl)
    return value, metrics

  return _attach_evaluation(loss, task, cfg)


def sft_loss_terms(token_logps_sum_K, token_counts_K, accepted_K):
  """(loss, accepted tokens): the mean negative log-likelihood per token over the accepted
  completions (TRL's SFT averages over the batch's tokens); 0 when none is accepted."""
  weights_K = accepted_K.astype(jnp.float32)
  tokens = jnp.sum(token_counts_K * weights_K)
  return -jnp.sum(token_logps_sum_K * weights_K) / jnp.maximum(tokens, 1.0), tokens


@register_objective('sft', needs_reference=True)
def sft(objective_config, task):
  """Filtered SFT: cross-entropy of the judge-accepted completions among the step's two per
  prompt (no negative gradient)."""
  cfg = validate_sft(objective_config, task)
  draw = _draw(task, cfg, _load_dataset(task, cfg))
  on_policy = cfg['mode'] == 'on_policy'

  def loss(model, reference, batch, key):
    prompts, seqs, comps, masks, rewards = draw(model, batch, key)
    start = prompts['prompt_len_B']
    both = lambda x: x.reshape((-1,) + x.shape[2:])
    starts = jnp.concatenate([start, start])
    logps, counts = completion_logps(model, both(seqs), starts, both(masks))
    accepted = task.judge_accepts(both(rewards), cfg)
    value, tokens = sft_loss_terms(logps, counts, accepted)
    metrics = _sample_metrics(task, cfg, comps, rewards)
    metrics['sft/tokens'] = tokens
    if on_policy:
      ref_logps, _ = completion_logps(_frozen(reference), both(seqs), starts, both(masks))
      metrics['kl'] = jax.lax.stop_gradient(jnp.mean(logps - ref_logps))
    return value, metrics

  return _attach_evaluation(loss, task, cfg)


def _expand(mask_B, like):
  return mask_B.reshape(mask_B.shape + (1,) * (like.ndim - 1))
