"""The didactic bandit of Tajwar et al. (2024), "Preference Fine-Tuning of LLMs Should Leverage
Suboptimal, On-Policy Data": offline vs on-policy DPO on a tabular policy.

    python -m studies.preference_bandit --out runs/bandit [--steps 500 --batch 64 --beta 0.1
        --lr 0.05 --loss_type sigmoid,ipo --seeds 3 --temperature 0.1 --num_pairs 32000
        --extra_num_pairs 64,1024]

The problem (data/bandit.py): a vocabulary of 100 tokens, responses of 9 tokens, the reference
pi_ref = the authors' squashed-Cauchy histogram (interior mode at token 16, "peaked at 15"),
the same at every position; a response's reward is the mean over its tokens of
r(a) = exp(-((a - c) / 10)^2), c = 70 ("far": a low-probability region of pi_ref) or c = 20
("near": next to its mode).

The policy is tabular: logits [9, 100], one categorical per position (tokens independent),
initialised at pi_ref. Expected reward and KL(pi || pi_ref) (sum over positions) are exact.

Pairs are two responses labelled by Bradley-Terry on the reward at `--temperature` T:
P(a > b) = sigmoid((r(a) - r(b)) / T) (T = 0: the higher reward wins, ties dropped).
  * offline:   one fixed dataset of `--num_pairs` pairs drawn from pi_ref before training;
               every step takes the next `--batch` of them, epoch after epoch (a fresh
               permutation per epoch). Default num_pairs = steps * batch: the same budget of
               labelled pairs as on-policy, one epoch. num_pairs == batch: the whole dataset,
               the same pairs, at every step. `--extra_num_pairs` adds offline runs (first
               loss type) at other dataset sizes, for the table only.
  * on_policy: every step draws `--batch` fresh pairs from the current policy (stop-gradient).
The loss is training/preference_losses.py `preference_loss` (default `sigmoid` = DPO) on the
summed log-probs, optimised with optax Adam. Everything, the sampling included, is one jitted
`lax.scan` over steps, vmapped over the two rewards and the seeds.

For reference the table gives the KL-regularised optimum that DPO's population loss targets:
with BT labels at temperature T the implied reward is r / T, so the optimum of
E[r / T] - beta KL(pi || pi_ref) is pi* ∝ pi_ref exp(r / (T beta)) (`optimal_policy_logits`
with the table r / T; per position the exponent is r / (9 T beta)). With T = 0 the labels are
hard and DPO's target is unbounded; the column then shows the pi_ref-restricted maximum 1.0.

Writes OUT/bandit.json (settings, reference, rewards, optimum, every run's per-step exact
reward / KL / loss for every seed, the policy's token distribution, averaged over positions,
at `--num_records` regularly spaced steps) and OUT/bandit.png (copied to `--docs_png`).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from data import bandit
from data.judges import bradley_terry_labels
from training.preference_losses import LOSS_TYPES, REFERENCE_FREE, masked_mean, preference_loss

REWARDS = {'far': bandit.FAR_CENTER, 'near': bandit.NEAR_CENTER}
MODES = ('offline', 'on_policy')
# Best-of-2 filtered SFT: maximum likelihood of the chosen response of each pair, no
# negative gradient on the rejected one (Tajwar et al.'s "Pref-FT" without the contrast).
SFT = 'sft'
KL_BUDGETS = (0.5, 2.0)


class Pairs(NamedTuple):
  chosen: jax.Array      # int32[B, L]
  rejected: jax.Array    # int32[B, L]
  valid: jax.Array       # float32[B]: 0 for a tie (T = 0) or two identical responses


@functools.partial(jax.jit, static_argnames='num_pairs')
def sample_pairs(key, logits_LxV, table_V, num_pairs: int, temperature) -> Pairs:
  """`num_pairs` pairs of responses drawn independently from the policy `logits_LxV` and
  labelled by Bradley-Terry on the sequence reward."""
  k_a, k_b, k_label = jax.random.split(key, 3)
  length = logits_LxV.shape[0]
  a = bandit.sample(k_a, logits_LxV, num_pairs, length)
  b = bandit.sample(k_b, logits_LxV, num_pairs, length)
  prefer_a, tie = bradley_terry_labels(k_label, bandit.sequence_reward(a, table_V),
                                       bandit.sequence_reward(b, table_V), temperature)
  chosen = jnp.where(prefer_a[:, None], a, b)
  rejected = jnp.where(prefer_a[:, None], b, a)
  valid = (~tie) & jnp.any(a != b, axis=-1)
  return Pairs(chosen, rejected, valid.astype(jnp.float32))


@functools.partial(jax.jit, static_argnames=('mode', 'batch'))
def step_pairs(mode: str, key, logits_LxV, dataset: Pairs, index_B, table_V, batch: int,
               temperature) -> Pairs:
  """The pairs one training step uses. offline: the rows `index_B` of the fixed `dataset`
  (the policy and the key are not used). on_policy: `batch` fresh pairs from the current
  policy (no gradient through the sampling)."""
  if mode == 'offline':
    return jax.tree.map(lambda x: x[index_B], dataset)
  if mode == 'on_policy':
    return sample_pairs(key, jax.lax.stop_gradient(logits_LxV), table_V, batch, temperature)
  raise ValueError(f'unknown mode {mode!r}; known: {", ".join(MODES)}')


def epoch_order(key, num_pairs: int, steps: int, batch: int) -> jax.Array:
  """int32[steps, batch]: which dataset rows each offline step uses, epoch after epoch, a
  fresh permutation per epoch (batches cross epoch boundaries when batch does not divide the
  dataset). With num_pairs == batch every step uses the whole dataset."""
  epochs = -(-steps * batch // num_pairs)
  perms = jax.vmap(lambda k: jax.random.permutation(k, num_pairs))(
      jax.random.split(key, epochs))
  return perms.reshape(-1)[:steps * batch].reshape(steps, batch).astype(jnp.int32)


def pair_digest(pairs: Pairs) -> jax.Array:
  """An exact uint32 fingerprint of a batch of pairs that ignores their order (a wrapping sum
  over pairs of a hash of each pair's token ids), to see whether two steps trained on the same
  pairs."""
  length = pairs.chosen.shape[-1]
  w = (2 * jnp.arange(2 * length, dtype=jnp.uint32) + 101) * jnp.uint32(2654435761)
  tokens = jnp.concatenate([pairs.chosen, pairs.rejected], -1).astype(jnp.uint32)
  code = (tokens + 1) @ w
  return jnp.sum(code * (code | jnp.uint32(1)), dtype=jnp.uint32)


def make_run(mode: str, loss_type: str, *, steps: int, batch: int, num_pairs: int, beta: float,
             lr: float, temperature: float, num_tokens: int, vocab_size: int):
  """A jitted fn(keys[S], tables[R, V]) -> per-step metrics [R, S, steps + 1, ...] (step 0 =
  the reference), for R rewards and S seeds."""
  if loss_type != SFT and loss_type in REFERENCE_FREE:
    raise ValueError(f'{loss_type} is reference-free and length-normalised; use one of '
                     f'{", ".join(t for t in LOSS_TYPES if t not in REFERENCE_FREE)}')
  ref = bandit.reference_logits(vocab_size, num_tokens)          # [L, V]
  opt = optax.adam(lr)

  def loss_fn(logits, pairs):
    if loss_type == SFT:       # filtered (best-of-2) SFT: the chosen response's likelihood only
      return masked_mean(-bandit.log_prob(pairs.chosen, logits), pairs.valid)
    out = preference_loss(
        loss_type, bandit.log_prob(pairs.chosen, logits), bandit.log_prob(pairs.rejected, logits),
        bandit.log_prob(pairs.chosen, ref), bandit.log_prob(pairs.rejected, ref), beta=beta,
        mask=pairs.valid)
    return masked_mean(out['losses'], pairs.valid)

  def metrics(logits, table, loss, digest):
    return {'expected_reward': bandit.expected_reward(logits, table),
            'kl': bandit.kl_divergence(logits, ref), 'loss': loss, 'pair_digest': digest,
            'probs': jnp.mean(jax.nn.softmax(logits), axis=0)}

  def run(key, table):
    k_data, k_order, k_steps = jax.random.split(key, 3)
    dataset = sample_pairs(k_data, ref, table, num_pairs, temperature)
    order = epoch_order(k_order, num_pairs, steps, batch)
    logits = ref
    state = opt.init(logits)

    def body(carry, xs):
      logits, state = carry
      k, index = xs
      pairs = step_pairs(mode, k, logits, dataset, index, table, batch, temperature)
      loss, grad = jax.value_and_grad(loss_fn)(logits, pairs)
      updates, state = opt.update(grad, state, logits)
      new = optax.apply_updates(logits, updates)
      return (new, state), metrics(new, table, loss, pair_digest(pairs))

    _, per_step = jax.lax.scan(body, (logits, state),
                                (jax.random.split(k_steps, steps), order))
    first = metrics(logits, table, jnp.float32(jnp.nan), jnp.uint32(0))
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, per_step)

  return jax.jit(jax.vmap(jax.vmap(run, in_axes=(0, None)), in_axes=(None, 0)))


def optimum(table_V, beta: float, temperature: float, num_tokens: int, vocab_size: int) -> dict:
  """Expected reward, KL and token distribution of pi* ∝ pi_ref exp(r / (T beta)) (module
  docstring); T = 0: the best response (reward 1 at the reward's centre), KL of the point mass."""
  ref = bandit.reference_logits(vocab_size, num_tokens)
  if temperature > 0:
    logits = bandit.optimal_policy_logits(ref, table_V / temperature, beta, num_tokens)
  else:
    logits = jnp.where(jnp.arange(vocab_size) == jnp.argmax(table_V), 0.0, -1e9)[None].repeat(
        num_tokens, 0)
  return {'expected_reward': float(bandit.expected_reward(logits, table_V)),
          'kl': float(bandit.kl_divergence(logits, ref)),
          'probs': np.asarray(jnp.mean(jax.nn.softmax(logits), 0)).tolist()}


def record_steps(steps: int, num_records: int) -> list[int]:
  """`num_records` regularly spaced steps from 0 to `steps` (both included)."""
  return sorted(set(np.linspace(0, steps, max(num_records, 2)).round().astype(int).tolist()))


def run_study(args) -> dict:
  loss_types = [t for t in args.loss_type.split(',') if t]
  names = list(REWARDS)
  tables = jnp.stack([bandit.reward_table(REWARDS[n], bandit.REWARD_WIDTH, args.vocab_size)
                      for n in names])
  keys = jax.random.split(jax.random.key(args.seed), args.seeds)
  recorded = record_steps(args.steps, args.num_records)
  settings = {k: getattr(args, k) for k in (
      'steps', 'batch', 'num_pairs', 'beta', 'lr', 'temperature', 'seeds', 'seed',
      'num_tokens', 'vocab_size', 'num_records', 'extra_num_pairs')}
  settings.update(loss_types=loss_types, optimizer='adam', policy='tabular logits [L, V], '
                  'one categorical per position, initialised at pi_ref',
                  reward_width=bandit.REWARD_WIDTH, reward_centers=dict(REWARDS))
  result = {
      'settings': settings,
      'recorded_steps': recorded,
      'reference_probs': np.asarray(bandit.reference_probs(args.vocab_size)).tolist(),
      'rewards': {n: {'center': REWARDS[n], 'table': np.asarray(t).tolist(),
                      'reference_expected_reward': float(bandit.expected_reward(
                          bandit.reference_logits(args.vocab_size), t)),
                      'optimum': optimum(t, args.beta, args.temperature, args.num_tokens,
                                         args.vocab_size)}
                  for n, t in zip(names, tables)},
      'runs': [],
      'timing_s': {},
  }
  jobs = [(loss_type, mode, args.num_pairs) for loss_type in loss_types for mode in MODES]
  jobs += [(loss_types[0], 'offline', n) for n in args.extra_num_pairs if n != args.num_pairs]
  for loss_type, mode, num_pairs in jobs:
    start = time.time()
    fn = make_run(mode, loss_type, steps=args.steps, batch=args.batch, num_pairs=num_pairs,
                  beta=args.beta, lr=args.lr, temperature=args.temperature,
                  num_tokens=args.num_tokens, vocab_size=args.vocab_size)
    out = jax.device_get(fn(keys, tables))
    tag = f'{loss_type}/{mode}' + (f'/{num_pairs}' if mode == 'offline' else '')
    result['timing_s'][tag] = round(time.time() - start, 2)
    for i, name in enumerate(names):
      er = np.asarray(out['expected_reward'][i], np.float64)   # [S, steps + 1]
      kl = np.asarray(out['kl'][i], np.float64)
      probs = np.asarray(out['probs'][i])                       # [S, steps + 1, V]
      lo, hi = max(0, int(REWARDS[name]) - 10), int(REWARDS[name]) + 11
      result['runs'].append({
          'reward': name, 'center': REWARDS[name], 'mode': mode, 'loss_type': loss_type,
          'num_pairs': num_pairs if mode == 'offline' else None,
          'main': num_pairs == args.num_pairs,
          'expected_reward': er.tolist(), 'kl': kl.tolist(),
          'loss': np.asarray(out['loss'][i]).tolist(),
          'pair_digest': np.asarray(out['pair_digest'][i]).tolist(),
          'policy_probs': probs[:, recorded].mean(0).tolist(),   # [records, V], seed mean
          'at_kl_budget': reward_at_kl_budgets(er, kl),
          'final': {'expected_reward_mean': float(er[:, -1].mean()),
                    'expected_reward_std': float(er[:, -1].std()),
                    'kl_mean': float(kl[:, -1].mean()), 'kl_std': float(kl[:, -1].std()),
                    'mass_within_10_of_center': float(np.mean(np.sum(probs[:, -1, lo:hi],
                                                                     -1)))},
      })
  return result


def reward_at_kl_budgets(er_SxT, kl_SxT) -> dict:
  """Per KL budget b: the best expected reward over the steps whose KL(pi || ref) <= b (the
  seed mean of each seed's best), and the first step reaching it within 0.01 (seed mean):
  which objective gets further, and sooner, for the same divergence from the reference."""
  out = {}
  for budget in KL_BUDGETS:
    inside = kl_SxT <= budget
    best = np.where(inside, er_SxT, -np.inf).max(-1)
    first = [int(np.argmax(inside[i] & (er_SxT[i] >= best[i] - 0.01)))
             for i in range(er_SxT.shape[0])]
    out[f'{budget:g}'] = {'expected_reward': float(best.mean()), 'step': float(np.mean(first))}
  return out


def table_markdown(result: dict) -> str:
  s = result['settings']
  lines = [f'| reward (center; pi_ref E[r]) | loss | mode (offline pairs) | final E[r] | '
           f'KL(pi‖ref) | mass ±10 of center | DPO target pi* (T={s["temperature"]:g}, '
           f'beta={s["beta"]:g}): E[r] | KL of pi* | '
           + ' | '.join(f'best E[r] at KL <= {b:g} (step)' for b in KL_BUDGETS) + ' |',
           '|---|---|---|---|---|---|---|---|' + '---|' * len(KL_BUDGETS)]
  for run in result['runs']:
    f = run['final']
    opt = result['rewards'][run['reward']]['optimum']
    ref_er = result['rewards'][run['reward']]['reference_expected_reward']
    mode = run['mode'] if run['num_pairs'] is None else f'{run["mode"]} ({run["num_pairs"]})'
    lines.append(
        f'| {run["reward"]} ({run["center"]:g}; {ref_er:.3f}) | {run["loss_type"]} | '
        f'{mode} | '
        f'{f["expected_reward_mean"]:.3f} ± {f["expected_reward_std"]:.3f} | '
        f'{f["kl_mean"]:.2f} ± {f["kl_std"]:.2f} | {f["mass_within_10_of_center"]:.3f} | '
        f'{opt["expected_reward"]:.3f} | {opt["kl"]:.2f} | '
        + ' | '.join(f'{run["at_kl_budget"][f"{b:g}"]["expected_reward"]:.3f} '
                     f'({run["at_kl_budget"][f"{b:g}"]["step"]:.0f})' for b in KL_BUDGETS)
        + ' |')
  return '\n'.join(lines)


def plot(result: dict, png_path: str) -> None:
  """Rows: far / near reward. Columns: the policy's token distribution through training
  (offline, on-policy; first loss type), then expected reward and KL vs step (every loss
  type, mean ± std over seeds)."""
  import matplotlib
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  s = result['settings']
  first_loss = s['loss_types'][0]
  fig = Figure(figsize=(22, 9))
  FigureCanvasAgg(fig)
  axes = fig.subplots(2, 4)
  tokens = np.arange(s['vocab_size'])
  ref = np.asarray(result['reference_probs'])
  recorded = np.asarray(result['recorded_steps'])
  cmap = matplotlib.colormaps['viridis']
  styles = ['-', '--', ':', '-.']
  for row, name in enumerate(REWARDS):
    info = result['rewards'][name]
    table = np.asarray(info['table'])
    runs = {(r['mode'], r['loss_type']): r for r in result['runs']
            if r['reward'] == name and r['main']}
    top = 0.0
    for col, mode in enumerate(MODES):
      ax = axes[row, col]
      run = runs[(mode, first_loss)]
      probs = np.asarray(run['policy_probs'])
      for j, step in enumerate(recorded):
        ax.plot(tokens, probs[j], color=cmap(j / max(len(recorded) - 1, 1)), lw=1.2,
                label=f'step {step}' if j in (0, len(recorded) // 2, len(recorded) - 1) else None)
      ax.plot(tokens, ref, 'k--', lw=1.2, label='reference')
      ax.plot(tokens, info['optimum']['probs'], color='gray', ls=':', lw=1.5,
              label='pi* (DPO target)')
      top = max(top, probs.max(), ref.max())
      twin = ax.twinx()
      twin.plot(tokens, table, color='crimson', lw=1.5, alpha=0.7)
      twin.set_ylim(0, 1.05)
      twin.set_ylabel('reward r(a)', color='crimson')
      f = run['final']
      ax.set_title(f'{name} reward (c={info["center"]:g}), {mode}, {first_loss}\n'
                   f'final E[r]={f["expected_reward_mean"]:.3f}, KL={f["kl_mean"]:.1f} '
                   f'(pi*: {info["optimum"]["expected_reward"]:.3f}, '
                   f'{info["optimum"]["kl"]:.1f})', fontsize=10)
      ax.set_xlabel('token')
      ax.set_ylabel('policy probability (mean over positions)')
      ax.legend(loc='upper right', fontsize=7)
    for col in (0, 1):
      axes[row, col].set_ylim(0, 1.05 * top)
    steps = np.arange(s['steps'] + 1)
    for key, ax, label in (('expected_reward', axes[row, 2], 'exact expected reward'),
                           ('kl', axes[row, 3], 'exact KL(pi || pi_ref)')):
      for li, loss_type in enumerate(s['loss_types']):
        for mi, mode in enumerate(MODES):
          y = np.asarray(runs[(mode, loss_type)][key])
          mean, std = y.mean(0), y.std(0)
          ax.plot(steps, mean, color=f'C{mi}', ls=styles[li % len(styles)],
                  label=f'{mode} ({loss_type})')
          ax.fill_between(steps, mean - std, mean + std, color=f'C{mi}', alpha=0.2, lw=0)
      ax.axhline(info['optimum'][key], color='gray', ls=':', label='pi* (DPO target)')
      if key == 'expected_reward':
        ax.axhline(info['reference_expected_reward'], color='k', ls='--', lw=1, label='pi_ref')
      ax.set_xlabel('step')
      ax.set_ylabel(label)
      ax.set_title(f'{name} reward: {label} ({s["seeds"]} seeds, ±1 std)', fontsize=10)
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7)
  fig.suptitle(f'Didactic bandit (Tajwar et al. 2024): V={s["vocab_size"]}, L={s["num_tokens"]} '
               f'tokens, tabular policy, Adam lr={s["lr"]:g}, beta={s["beta"]:g}, BT '
               f'temperature={s["temperature"]:g}, batch={s["batch"]}, offline dataset='
               f'{s["num_pairs"]} pairs, {s["steps"]} steps')
  fig.tight_layout()
  fig.savefig(png_path, dpi=90)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--out', default='runs/bandit')
  p.add_argument('--steps', type=int, default=500)
  p.add_argument('--batch', type=int, default=64, help='pairs per step')
  p.add_argument('--num_pairs', type=int, default=0,
                 help='offline dataset size (0: steps * batch, the on-policy runs\' budget of '
                 'labelled pairs, one epoch; = batch: the same pairs at every step)')
  p.add_argument('--beta', type=float, default=0.1)
  p.add_argument('--lr', type=float, default=0.05)
  p.add_argument('--temperature', type=float, default=0.1,
                 help='Bradley-Terry label temperature on the [0, 1] reward (0: hard labels)')
  p.add_argument('--loss_type', default='sigmoid,ipo,sft',
                 help='comma-separated preference losses, or sft (filtered SFT on the chosen '
                 'responses, no negative gradient); the first is drawn in the grid')
  p.add_argument('--seeds', type=int, default=3)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--num_tokens', type=int, default=bandit.NUM_TOKENS)
  p.add_argument('--vocab_size', type=int, default=bandit.VOCAB_SIZE)
  p.add_argument('--num_records', type=int, default=11)
  p.add_argument('--extra_num_pairs', default='64,1024',
                 help='comma-separated extra offline dataset sizes (table only; "" for none)')
  p.add_argument('--docs_png', default='docs/bandit.png', help="copy of the PNG ('' to skip)")
  args = p.parse_args(argv)
  if args.num_pairs <= 0:
    args.num_pairs = args.steps * args.batch
  args.extra_num_pairs = [int(n) for n in args.extra_num_pairs.split(',') if n.strip()]
  for t in args.loss_type.split(','):
    if t != SFT and (t not in LOSS_TYPES or t in REFERENCE_FREE):
      p.error(f'--loss_type {t!r}: use one of '
              f'{", ".join(x for x in LOSS_TYPES if x not in REFERENCE_FREE)}, {SFT}')
  return args


def main(argv=None) -> dict:
  args = parse_args(argv)
  start = time.time()
  os.makedirs(args.out, exist_ok=True)
  result = run_study(args)
  result['timing_s']['total_compute'] = round(time.time() - start, 2)
  with open(os.path.join(args.out, 'bandit.json'), 'w') as f:
    json.dump(result, f)
  png = os.path.join(args.out, 'bandit.png')
  plot(result, png)
  if args.docs_png:
    os.makedirs(os.path.dirname(args.docs_png) or '.', exist_ok=True)
    shutil.copyfile(png, args.docs_png)
  print(table_markdown(result))
  print(f'wrote {args.out}/bandit.json, {png} in {time.time() - start:.1f} s')
  return result


if __name__ == '__main__':
  main(sys.argv[1:])
