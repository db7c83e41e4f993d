"""Learning dynamics of preference learning (Im & Li 2024, "Understanding the Learning Dynamics
of Alignment with Human Feedback"): more distinguishable preferences are learned first.

    python -m studies.preference_dynamics --out runs/preference_dynamics \
        [--distinguishability 0.25,0.5,1,2 --steps 400 --seeds 5 --lr 0.5 --beta 0.1]

The setting (the paper's analysis model, at a scale that runs in seconds): K behaviours, each a
group of prompts with a preferred and a dispreferred response; a response is an embedding in
R^D and the policy is log-linear in it, log pi(y | x) = theta . f(x, y) - log Z(x), initialised
at the reference theta = 0. Behaviour k's embeddings live in its own block of D / K
coordinates (the behaviours are orthogonal, as in the paper's analysis); its preferred ones are
f+ ~ N(mu_k + (delta_k / 2) u_k, sigma^2 I) and its dispreferred f- ~ N(mu_k - (delta_k / 2)
u_k, sigma^2 I) in that block, u_k a unit direction and mu_k shared by both;
`--distinguishability` sets delta_k / sigma, the knob. The DPO loss of a pair is -log sigmoid(beta theta . (f+ - f-)) (the partition
function cancels within a prompt). Training is full-batch gradient descent on
`--pairs_per_behaviour` pairs per behaviour.

Measured per behaviour: the policy's preference probability on its training pairs,
mean sigmoid(beta theta . (f+ - f-)) (1/2 at the reference; the quantity DPO's loss raises),
its expected implicit reward margin beta (delta_k sigma) theta . u_k, and, exactly rather
than by sampling, the accuracy on fresh pairs P(theta . (f+ - f-) > 0) =
Phi(delta_k theta_k . u_k / (sqrt(2) |theta_k|)) (theta_k: the behaviour's block; the difference
is Gaussian). The paper's claim: the weight along a behaviour's direction grows at a rate that
increases with its distinguishability, so that behaviour is learned first. The table gives,
per behaviour, the first step at which its preference probability reaches 0.55 and 0.7 (mean
over seeds), the exact accuracy against its best possible Phi(delta_k / sqrt(2)), and the
margin at three steps.

Writes OUT/dynamics.{json,md,png} (and docs/preference_dynamics.png).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np

THRESHOLDS = (0.55, 0.7)


def make_data(key, deltas_K, *, dim: int, pairs: int, sigma: float):
  """(diff_KxNxD, directions_KxD, blocks_KxD): f+ - f- per training pair, the behaviours'
  unit directions, and each behaviour's block of coordinates (0/1)."""
  k_dir, k_mu, k_pos, k_neg = jax.random.split(key, 4)
  num = deltas_K.shape[0]
  width = dim // num
  blocks_KxD = (jnp.arange(dim)[None, :] // width == jnp.arange(num)[:, None]).astype(
      jnp.float32)
  raw = jax.random.normal(k_dir, (num, dim)) * blocks_KxD
  directions_KxD = raw / jnp.linalg.norm(raw, axis=1, keepdims=True)
  mu_KxD = jax.random.normal(k_mu, (num, dim)) * blocks_KxD
  half = (0.5 * deltas_K * sigma)[:, None] * directions_KxD
  noise = lambda k: sigma * jax.random.normal(k, (num, pairs, dim)) * blocks_KxD[:, None]
  pos = mu_KxD[:, None] + half[:, None] + noise(k_pos)
  neg = mu_KxD[:, None] - half[:, None] + noise(k_neg)
  return pos - neg, directions_KxD, blocks_KxD


def exact_accuracy(theta_D, directions_KxD, blocks_KxD, deltas_K):
  """P(theta . (f+ - f-) > 0) per behaviour on fresh pairs, in closed form."""
  norm_K = jnp.maximum(jnp.sqrt(blocks_KxD @ jnp.square(theta_D)), 1e-12)
  return jax.scipy.stats.norm.cdf(deltas_K * (directions_KxD @ theta_D)
                                  / (math.sqrt(2.0) * norm_K))


def run(key, deltas_K, *, dim: int, pairs: int, sigma: float, beta: float, lr: float,
        steps: int):
  """Per step (step 0 = the reference): preference probability, exact accuracy and margin,
  each [T + 1, K], and the loss [T + 1]."""
  diff_KxNxD, directions_KxD, blocks_KxD = make_data(key, deltas_K, dim=dim, pairs=pairs,
                                                     sigma=sigma)

  def loss_fn(theta_D):
    return -jnp.mean(jax.nn.log_sigmoid(beta * diff_KxNxD @ theta_D))

  def record(theta_D, loss):
    return {'preference': jnp.mean(jax.nn.sigmoid(beta * diff_KxNxD @ theta_D), axis=1),
            'accuracy': exact_accuracy(theta_D, directions_KxD, blocks_KxD, deltas_K),
            'margin': beta * deltas_K * sigma * (directions_KxD @ theta_D), 'loss': loss}

  def body(theta_D, _):
    loss, grad = jax.value_and_grad(loss_fn)(theta_D)
    theta_D = theta_D - lr * grad
    return theta_D, record(theta_D, loss)

  theta0 = jnp.zeros((dim,))
  _, per_step = jax.lax.scan(body, theta0, None, length=steps)
  first = record(theta0, loss_fn(theta0))
  first['accuracy'] = jnp.full_like(deltas_K, 0.5)   # theta = 0: no preference yet
  return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, per_step)


def first_step(curve_T, threshold: float):
  hits = np.flatnonzero(np.asarray(curve_T) >= threshold)
  return int(hits[0]) if hits.size else None


def study(args) -> dict:
  deltas = jnp.asarray(args.distinguishability, jnp.float32)
  fn = jax.jit(jax.vmap(lambda k: run(k, deltas, dim=args.dim, pairs=args.pairs_per_behaviour,
                                      sigma=args.sigma, beta=args.beta, lr=args.lr,
                                      steps=args.steps)))
  out = jax.device_get(fn(jax.random.split(jax.random.key(args.seed), args.seeds)))
  preference = np.asarray(out['preference'])  # [S, T + 1, K]
  accuracy = np.asarray(out['accuracy'])
  margin = np.asarray(out['margin'])
  rows = []
  for k, delta in enumerate(args.distinguishability):
    steps = {f'{t:g}': [first_step(preference[s, :, k], t) for s in range(args.seeds)]
             for t in THRESHOLDS}
    mean_step = {t: (None if any(v is None for v in vs) else float(np.mean(vs)))
                 for t, vs in steps.items()}
    rows.append({'distinguishability': delta, 'steps_to': steps, 'mean_steps_to': mean_step,
                 'final_preference': float(preference[:, -1, k].mean()),
                 'final_accuracy': float(accuracy[:, -1, k].mean()),
                 'best_accuracy': float(0.5 * math.erfc(-delta / 2.0)),   # Phi(delta / sqrt 2)
                 'margin': {str(t): float(margin[:, t, k].mean())
                            for t in sorted({args.steps // 10, args.steps // 2, args.steps})}})
  ordered = all(
      (a['mean_steps_to']['0.55'] or np.inf) >= (b['mean_steps_to']['0.55'] or np.inf)
      for a, b in zip(sorted(rows, key=lambda r: r['distinguishability']),
                      sorted(rows, key=lambda r: r['distinguishability'])[1:]))
  return {'settings': {k: getattr(args, k) for k in (
              'distinguishability', 'steps', 'seeds', 'seed', 'dim', 'pairs_per_behaviour',
              'sigma', 'beta', 'lr')},
          'behaviours': rows, 'more_distinguishable_learned_first': bool(ordered),
          'preference_mean': preference.mean(0).tolist(),
          'accuracy_mean': accuracy.mean(0).tolist(), 'margin_mean': margin.mean(0).tolist()}


def markdown(result) -> str:
  margin_steps = list(result['behaviours'][0]['margin'])
  lines = ['| distinguishability delta / sigma | steps to preference probability 0.55 (mean; '
           'per seed) | steps to 0.7 | final preference probability | exact accuracy (best '
           'possible) | ' + ' | '.join(f'margin at step {s}' for s in margin_steps) + ' |',
           '|---|---|---|---|---|' + '---|' * len(margin_steps)]
  fmt = lambda v: 'not reached' if v is None else f'{v:.0f}'
  for r in result['behaviours']:
    lines.append(
        f'| {r["distinguishability"]:g} | {fmt(r["mean_steps_to"]["0.55"])} '
        f'({", ".join(fmt(v) for v in r["steps_to"]["0.55"])}) | '
        f'{fmt(r["mean_steps_to"]["0.7"])} | {r["final_preference"]:.3f} | '
        f'{r["final_accuracy"]:.3f} ({r["best_accuracy"]:.3f}) | ' +
        ' | '.join(f'{r["margin"][s]:.3f}' for s in margin_steps) + ' |')
  lines.append('')
  lines.append('More distinguishable behaviours reach preference probability 0.55 first: '
               f'{"yes" if result["more_distinguishable_learned_first"] else "no"}.')
  return '\n'.join(lines)


def plot(result, png_path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  accuracy = np.asarray(result['preference_mean'])
  margin = np.asarray(result['margin_mean'])
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for k, r in enumerate(result['behaviours']):
    label = f'delta / sigma = {r["distinguishability"]:g}'
    axes[0].plot(accuracy[:, k], color=f'C{k}', label=label)
    axes[1].plot(margin[:, k], color=f'C{k}', label=label)
  axes[0].set_ylabel('preference probability on training pairs')
  axes[1].set_ylabel('mean implicit reward margin')
  for ax in axes:
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  s = result['settings']
  fig.suptitle(f'DPO on a log-linear policy: D={s["dim"]}, {s["pairs_per_behaviour"]} pairs per '
               f'behaviour, beta={s["beta"]:g}, lr={s["lr"]:g}, {s["seeds"]} seeds', fontsize=9)
  fig.tight_layout()
  fig.savefig(png_path, dpi=120)
  plt.close(fig)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--out', default='runs/preference_dynamics')
  p.add_argument('--distinguishability', default='0.25,0.5,1,2',
                 help='comma-separated delta / sigma, one behaviour each')
  p.add_argument('--steps', type=int, default=1000)
  p.add_argument('--seeds', type=int, default=5)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--dim', type=int, default=32)
  p.add_argument('--pairs_per_behaviour', type=int, default=256)
  p.add_argument('--sigma', type=float, default=1.0)
  p.add_argument('--beta', type=float, default=0.1)
  p.add_argument('--lr', type=float, default=2.0)
  p.add_argument('--docs_png', default='docs/preference_dynamics.png')
  args = p.parse_args(argv)
  try:
    args.distinguishability = [float(x) for x in args.distinguishability.split(',') if x]
  except ValueError:
    p.error(f'--distinguishability {args.distinguishability!r}: comma-separated numbers')
  if not args.distinguishability or min(args.distinguishability) <= 0:
    p.error('--distinguishability: one or more numbers > 0')
  if len(args.distinguishability) > args.dim // 2:
    p.error(f'--distinguishability: at most --dim / 2 = {args.dim // 2} behaviours (a block '
            f'of at least 2 coordinates each)')
  for name in ('steps', 'seeds', 'dim', 'pairs_per_behaviour'):
    if getattr(args, name) < 1:
      p.error(f'--{name} must be >= 1')
  if args.sigma <= 0 or args.beta <= 0 or args.lr <= 0:
    p.error('--sigma, --beta and --lr must be > 0')
  return args


def main(argv=None) -> dict:
  args = parse_args(argv)
  start = time.time()
  result = study(args)
  result['seconds'] = round(time.time() - start, 2)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'dynamics.json'), 'w') as f:
    json.dump(result, f)
  text = markdown(result)
  with open(os.path.join(args.out, 'dynamics.md'), 'w') as f:
    f.write(text + '\n')
  png = os.path.join(args.out, 'dynamics.png')
  plot(result, png)
  if args.docs_png:
    shutil.copyfile(png, args.docs_png)
  print(text)
  print(f'wrote {args.out}/dynamics.json, dynamics.md, dynamics.png in {result["seconds"]} s')
  return result


if __name__ == '__main__':
  main()
