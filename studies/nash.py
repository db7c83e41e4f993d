"""Non-transitive preferences: no Bradley-Terry reward fits them, Nash-MD finds the equilibrium,
ascending a fitted BT reward cycles or collapses (Munos et al. 2024, "Nash Learning from Human
Feedback").

    python -m studies.nash --out runs/nash [--p 0.8 --steps 500 --eta 0.1 --tau 0.1
        --bt_eta 0.1,1.0 --start 0.8,0.15,0.05]

Completions fall in 3 classes with the rock-paper-scissors preference of data/judges.py
`cyclic_preference_matrix(p)`: class i beats i + 1 (mod 3) with probability p. Everything is
exact (data/bandit.py), on a categorical policy over the 3 classes:

(a) `bt_fit_residual`: the least sum of squared errors, over the 6 ordered pairs, of any
    Bradley-Terry model sigmoid(r_i - r_j) against P; > 0 for every p != 1/2 (for this cycle the
    best BT model is the constant reward, predicting 1/2 everywhere: residual 6 (p - 1/2)^2),
    ~0 for a transitive control built from a BT reward.
(b) Nash-MD (`nash_md`, reference mu uniform, mixing eta * tau) from a biased start: the last
    iterate converges to the (regularised = unregularised, for uniform mu) equilibrium
    `nash_equilibrium_3`, uniform. With tau = 0 the same update is plain mirror descent in
    self-play (multiplicative weights), whose last iterate does not converge.
(c) The Bradley-Terry route (`bt_reward_dynamics`): fit a BT reward to the current policy's
    pairs (weights pi pi^T) and take a mirror-ascent step on it. The on-policy fit always
    rewards the class that beats the current favourite, so the policy chases around the cycle;
    with a large step it collapses onto one class (the other classes' probabilities underflow
    and the fit no longer sees them).

Reported per step: the class probabilities, the L1 distance to the equilibrium and the
best-response exploitability max_y P(y > pi) - 1/2 (0 exactly at the equilibrium).
Writes OUT/nash.json and OUT/nash.png (copied to `--docs_png`) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from data import bandit
from data.judges import bradley_terry_prob, cyclic_preference_matrix


def exploitability(probs_C, pref_CxC) -> jax.Array:
  """max_y P(y > pi) - 1/2: what a best response wins against pi beyond a tie."""
  return jnp.max(pref_CxC @ probs_C, axis=-1) - 0.5


def bt_matrix(reward_C) -> jax.Array:
  """The Bradley-Terry preference matrix sigmoid(r_i - r_j) of a reward."""
  reward_C = jnp.asarray(reward_C, jnp.float32)
  return bradley_terry_prob(reward_C[:, None], reward_C[None, :], 1.0)


_fit = jax.jit(bandit.bt_fit_residual)
_residual = jax.jit(jax.vmap(lambda pref: bandit.bt_fit_residual(pref)[0]))


def trajectory_summary(probs_TxC, pref_CxC, equilibrium_C, last: int) -> dict:
  probs = jnp.asarray(probs_TxC)
  distance = jnp.sum(jnp.abs(probs - equilibrium_C), axis=-1)
  exploit = jax.vmap(exploitability, in_axes=(0, None))(probs, pref_CxC)
  last = min(last, probs.shape[0])
  return {'probs': np.asarray(probs).tolist(), 'distance_l1': np.asarray(distance).tolist(),
          'exploitability': np.asarray(exploit).tolist(),
          'final_distance_l1': float(distance[-1]),
          'final_exploitability': float(exploit[-1]),
          'mean_exploitability_last': float(jnp.mean(exploit[-last:])),
          'max_class_prob_last': float(jnp.max(probs[-last:])), 'last_window': last}


def run_study(args) -> dict:
  pref = cyclic_preference_matrix(args.p)
  equilibrium = bandit.nash_equilibrium_3(pref)
  start_probs = np.asarray(args.start, np.float64)
  start_probs = start_probs / start_probs.sum()
  start = jnp.log(jnp.asarray(start_probs, jnp.float32))
  mu = jnp.zeros(3)                                   # uniform reference policy

  # (a) no BT reward fits the cycle; a transitive control is fitted exactly.
  residual, best_reward = _fit(pref)
  control = bt_matrix(jnp.array([1.0, 0.0, -1.0]))
  p_grid = np.round(np.linspace(0.5, 1.0, 11), 3)
  residual_vs_p = _residual(jax.vmap(cyclic_preference_matrix)(jnp.asarray(p_grid)))
  bt = {
      'residual': float(residual), 'best_reward': np.asarray(best_reward).tolist(),
      'best_fit_matrix': np.asarray(bt_matrix(best_reward)).tolist(),
      'least_squares_logit_fit_uniform_weights': np.asarray(bandit.bt_fit(pref)).tolist(),
      'constant_reward_residual': 6 * (args.p - 0.5) ** 2,
      'lower_bound': 2 * (args.p - 0.5) ** 2,
      'transitive_control': {'reward': [1.0, 0.0, -1.0],
                             'matrix': np.asarray(control).tolist(),
                             'residual': float(_fit(control)[0])},
      'residual_vs_p': {'p': p_grid.tolist(), 'residual': np.asarray(residual_vs_p).tolist()},
  }

  # (b), (c): the dynamics; every trajectory starts with the start policy (step 0).
  def with_start(traj):
    return jnp.concatenate([jnp.exp(start)[None], traj])

  methods = {}
  _, traj = bandit.nash_md(start, mu, pref, args.eta, args.tau, args.steps)
  methods['nash_md'] = {'kind': 'Nash-MD', 'eta': args.eta, 'tau': args.tau,
                        'traj': with_start(traj)}
  _, traj = bandit.nash_md(start, mu, pref, args.eta, 0.0, args.steps)
  methods['mirror_descent_selfplay'] = {'kind': 'Nash-MD with tau = 0 (self-play MWU)',
                                        'eta': args.eta, 'tau': 0.0, 'traj': with_start(traj)}
  for eta in args.bt_eta:
    _, traj = bandit.bt_reward_dynamics(start, pref, eta, args.steps)
    methods[f'bt_reward_eta{eta:g}'] = {'kind': 'fit BT reward on-policy, ascend it',
                                        'eta': eta, 'tau': None, 'traj': with_start(traj)}
  for m in methods.values():
    m.update(trajectory_summary(m.pop('traj'), pref, equilibrium, args.last))
  return {
      'settings': {k: getattr(args, k) for k in ('p', 'steps', 'eta', 'tau', 'bt_eta', 'last')}
                  | {'start': start_probs.tolist(), 'reference_mu': [1 / 3] * 3},
      'preference_matrix': np.asarray(pref).tolist(),
      'equilibrium': np.asarray(equilibrium).tolist(),
      'start_exploitability': float(exploitability(jnp.exp(start), pref)),
      'bt_fit': bt,
      'methods': methods,
  }


def table_markdown(result: dict) -> str:
  last = result['settings']['last']
  lines = [f'| method | eta | tau | final L1 distance to equilibrium | final exploitability | '
           f'mean exploitability, last {last} steps | max class prob, last {last} steps |',
           '|---|---|---|---|---|---|---|']
  start = result['settings']['start']
  eq = np.asarray(result['equilibrium'])
  lines.append(f'| start policy {np.round(start, 3).tolist()} | | | '
               f'{np.abs(np.asarray(start) - eq).sum():.3f} | '
               f'{result["start_exploitability"]:.3f} | | |')
  for name, m in result['methods'].items():
    tau = '' if m['tau'] is None else f'{m["tau"]:g}'
    lines.append(f'| {name} | {m["eta"]:g} | {tau} | {m["final_distance_l1"]:.2e} | '
                 f'{m["final_exploitability"]:.2e} | {m["mean_exploitability_last"]:.3f}'
                 f' | {m["max_class_prob_last"]:.3f} |')
  bt = result['bt_fit']
  lines.append('')
  lines.append(f'BT fit of the cycle (p={result["settings"]["p"]:g}): least squared error '
               f'{bt["residual"]:.4f} (constant reward: {bt["constant_reward_residual"]:.4f}, '
               f'lower bound {bt["lower_bound"]:.4f}); transitive control: '
               f'{bt["transitive_control"]["residual"]:.2e}')
  return '\n'.join(lines)


def _simplex_xy(probs):
  probs = np.asarray(probs)
  return probs[..., 1] + 0.5 * probs[..., 2], math.sqrt(3) / 2 * probs[..., 2]


def plot(result: dict, png_path: str) -> None:
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  methods = result['methods']
  names = list(methods)
  ncols = max(4, len(names))
  fig = Figure(figsize=(4.6 * ncols, 9))
  FigureCanvasAgg(fig)
  axes = fig.subplots(2, ncols)
  bt = result['bt_fit']
  p = result['settings']['p']

  # (a) true vs best BT probabilities over the 6 ordered pairs.
  ax = axes[0, 0]
  pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
  true = [result['preference_matrix'][i][j] for i, j in pairs]
  fit = [bt['best_fit_matrix'][i][j] for i, j in pairs]
  x = np.arange(len(pairs))
  ax.bar(x - 0.2, true, 0.4, label='P (cyclic)')
  ax.bar(x + 0.2, fit, 0.4, label='best Bradley-Terry fit')
  ax.set_xticks(x, [f'P({i}>{j})' for i, j in pairs], fontsize=8)
  ax.axhline(0.5, color='gray', lw=0.8)
  ax.set_ylim(0, 1)
  ax.set_title(f'(a) no BT reward fits the cycle (p={p:g})\nresidual {bt["residual"]:.3f}; '
               f'transitive control {bt["transitive_control"]["residual"]:.1e}', fontsize=10)
  ax.legend(fontsize=8)

  ax = axes[0, 1]
  grid = np.asarray(bt['residual_vs_p']['p'])
  ax.plot(grid, bt['residual_vs_p']['residual'], 'o-', label='best BT fit residual')
  ax.plot(grid, 6 * (grid - 0.5) ** 2, 'k--', lw=1, label='6 (p - 1/2)^2 (constant reward)')
  ax.plot(grid, 2 * (grid - 0.5) ** 2, ':', color='gray', label='lower bound 2 (p - 1/2)^2')
  ax.set_xlabel('p = P(i beats i + 1)')
  ax.set_ylabel('sum of squared errors')
  ax.set_title('(a) BT misfit vs cycle strength', fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)

  # simplex
  ax = axes[0, 2]
  corners = np.array([[0, 0], [1, 0], [0.5, math.sqrt(3) / 2], [0, 0]])
  ax.plot(corners[:, 0], corners[:, 1], 'k-', lw=1)
  for k, (cx, cy) in enumerate(corners[:3]):
    ax.annotate(f'class {k}', (cx, cy), textcoords='offset points',
                xytext=(-10 if k == 0 else 5, -12 if k < 2 else 5), fontsize=9)
  for k, name in enumerate(names):
    sx, sy = _simplex_xy(methods[name]['probs'])
    ax.plot(sx, sy, color=f'C{k}', lw=1, label=name, alpha=0.85)
    ax.plot(sx[-1], sy[-1], 'o', color=f'C{k}', ms=5)
  sx, sy = _simplex_xy(result['settings']['start'])
  ax.plot(sx, sy, 'ks', ms=6, label='start')
  sx, sy = _simplex_xy(result['equilibrium'])
  ax.plot(sx, sy, '*', color='gold', mec='k', ms=14, label='Nash equilibrium')
  ax.set_aspect('equal')
  ax.set_xlim(-0.45, 1.05)
  ax.axis('off')
  ax.set_title('(b, c) trajectories on the simplex (dot: last iterate)', fontsize=10)
  ax.legend(fontsize=7, loc='upper left')

  ax = axes[0, 3]
  for k, name in enumerate(names):
    ax.semilogy(np.maximum(methods[name]['exploitability'], 1e-8), color=f'C{k}', label=name)
  ax.set_xlabel('step')
  ax.set_ylabel('exploitability max_y P(y > pi) - 1/2')
  ax.set_title('exploitability of the last iterate', fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  for col in range(4, ncols):
    axes[0, col].axis('off')

  for k, name in enumerate(names):
    ax = axes[1, k]
    probs = np.asarray(methods[name]['probs'])
    for c in range(3):
      ax.plot(probs[:, c], label=f'class {c}')
    ax.axhline(1 / 3, color='gray', ls=':', lw=1)
    m = methods[name]
    tau = '' if m['tau'] is None else f', tau={m["tau"]:g}'
    ax.set_title(f'{name} (eta={m["eta"]:g}{tau})\nfinal L1 dist {m["final_distance_l1"]:.1e}, '
                 f'exploitability {m["final_exploitability"]:.1e}', fontsize=10)
    ax.set_xlabel('step')
    ax.set_ylabel('class probability')
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  for col in range(len(names), ncols):
    axes[1, col].axis('off')
  fig.suptitle(f'Rock-paper-scissors preference (p={p:g}), exact dynamics from start '
               f'{np.round(result["settings"]["start"], 3).tolist()}, uniform reference mu')
  fig.tight_layout()
  fig.savefig(png_path, dpi=90)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--out', default='runs/nash')
  p.add_argument('--p', type=float, default=0.8, help='P(class i beats class i + 1)')
  p.add_argument('--steps', type=int, default=500)
  p.add_argument('--eta', type=float, default=0.1, help='Nash-MD step size')
  p.add_argument('--tau', type=float, default=0.1, help='Nash-MD KL regularisation')
  p.add_argument('--bt_eta', default='0.1,1.0', help='comma-separated BT-route step sizes')
  p.add_argument('--start', default='0.8,0.15,0.05', help='the biased start policy')
  p.add_argument('--last', type=int, default=100, help='window for the "last steps" columns')
  p.add_argument('--docs_png', default='docs/nash.png', help="copy of the PNG ('' to skip)")
  args = p.parse_args(argv)
  args.bt_eta = [float(x) for x in args.bt_eta.split(',') if x.strip()]
  args.start = [float(x) for x in args.start.split(',')]
  if len(args.start) != 3 or min(args.start) <= 0:
    p.error('--start needs 3 positive numbers')
  if not 0.5 < args.p <= 1.0:
    p.error('--p must be in (0.5, 1]')
  return args


def main(argv=None) -> dict:
  args = parse_args(argv)
  start = time.time()
  os.makedirs(args.out, exist_ok=True)
  result = run_study(args)
  result['timing_s'] = round(time.time() - start, 2)
  with open(os.path.join(args.out, 'nash.json'), 'w') as f:
    json.dump(result, f)
  png = os.path.join(args.out, 'nash.png')
  plot(result, png)
  if args.docs_png:
    os.makedirs(os.path.dirname(args.docs_png) or '.', exist_ok=True)
    shutil.copyfile(png, args.docs_png)
  print(table_markdown(result))
  print(f'wrote {args.out}/nash.json, {png} in {time.time() - start:.1f} s')
  return result


if __name__ == '__main__':
  main(sys.argv[1:])
