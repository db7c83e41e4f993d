"""The reward-KL frontier of preference objectives on REGBENCH, and on-policy against offline
with and without a negative gradient (Tajwar et al. 2024), from the preference sweeps.

    python sweep.py --sweep configs/sweeps/preference_zoo.py --workdir runs/preference_zoo
    python sweep.py --sweep configs/sweeps/preference_beta.py --workdir runs/preference_beta
    python -m studies.preference_frontier --zoo runs/preference_zoo \
        --beta runs/preference_beta --out runs/preference_frontier

Reads every member's scheduled evaluations (sweep_result.json of each run: judge score of
policy samples, KL(policy || reference) estimated from policy samples, completion length,
accept rate, in-context accuracy) and writes OUT/frontier.{json,md,png}:
  * one curve per objective in the (KL, judge score) plane: the best score reached at or
    below each KL over all of that objective's runs (every beta) and evaluations;
  * per objective, the best judge score within KL budgets and the first step reaching it;
  * the 2x2 of Tajwar et al.: {on-policy, offline} x {DPO (contrastive), filtered SFT};
  * per run, the final row, flagged when its mean completion length is under the judge's
    minimum (a length-hacked policy).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
from typing import Dict, List

import numpy as np

KL_BUDGETS = (0.5, 1.0, 2.0)
RESULT_FILE = 'sweep_result.json'


def load_runs(*sweep_dirs: str) -> List[dict]:
  """Every finished member of the given sweep directories: name, objective, evaluations."""
  runs = []
  for directory in sweep_dirs:
    if not directory:
      continue
    for path in sorted(glob.glob(os.path.join(directory, '*', RESULT_FILE))):
      with open(path) as f:
        members = json.load(f)['members']
      for name, entry in members.items():
        result = entry['seed_results'][0]
        runs.append({'name': name, 'sweep': os.path.basename(os.path.normpath(directory)),
                     'objective': result['objective'], 'evals': result.get('evals', []),
                     'steps': entry['steps']})
  return runs


def objective_label(objective: dict) -> str:
  """The curve a run belongs to: the loss (or sft) and the mode; beta is a point on it."""
  kind = objective.get('name', 'preference')
  loss = 'sft' if kind == 'sft' else objective.get('loss_type', 'sigmoid')
  return f'{loss} ({objective.get("mode", "on_policy").replace("_", "-")})'


def frontier(points_Px2: np.ndarray) -> np.ndarray:
  """The upper-left envelope of (kl, score) points: sorted by KL, the running maximum of the
  score (the best score available at or below each KL)."""
  order = np.argsort(points_Px2[:, 0], kind='stable')
  kl, score = points_Px2[order, 0], points_Px2[order, 1]
  return np.stack([kl, np.maximum.accumulate(score)], axis=1)


def best_within(evals: List[dict], budget: float):
  """(best judge score, its first step) among evaluations with KL <= budget."""
  inside = [e for e in evals if e.get('eval/kl', np.inf) <= budget]
  if not inside:
    return None, None
  best = max(e['eval/policy_reward'] for e in inside)
  step = min(e['step'] for e in inside if e['eval/policy_reward'] >= best - 1e-9)
  return best, step


def summarise(runs: List[dict], min_length: float) -> Dict[str, object]:
  curves: Dict[str, list] = {}
  for run in runs:
    label = objective_label(run['objective'])
    curves.setdefault(label, []).extend(
        [e['eval/kl'], e['eval/policy_reward'], e['step'], run['objective'].get('beta', 0.0)]
        for e in run['evals'] if 'eval/kl' in e)
  objectives = {}
  for label, points in curves.items():
    pts = np.array(points, np.float64)
    evals = [{'eval/kl': p[0], 'eval/policy_reward': p[1], 'step': p[2]} for p in points]
    objectives[label] = {
        'frontier': frontier(pts[:, :2]).tolist(),
        'budgets': {f'{b:g}': dict(zip(('score', 'step'), best_within(evals, b)))
                    for b in KL_BUDGETS}}
  rows = []
  for run in runs:
    if not run['evals']:
      continue
    first, last = run['evals'][0], run['evals'][-1]
    rows.append({
        'name': run['name'], 'objective': objective_label(run['objective']),
        'beta': run['objective'].get('beta'), 'step': last['step'],
        'score_before': first.get('eval/policy_reward'), 'score': last.get('eval/policy_reward'),
        'accept_before': first.get('eval/policy_accept_rate'),
        'accept': last.get('eval/policy_accept_rate'),
        'win_rate': last.get('eval/win_rate'), 'kl': last.get('eval/kl'),
        'length': last.get('eval/policy_length'),
        'length_hacked': (last.get('eval/policy_length') or 0.0) < min_length,
        'icl_accuracy_before': first.get('eval/accuracy_mean'),
        'icl_accuracy': last.get('eval/accuracy_mean'),
        'icl_loss_before': first.get('eval/loss_mean'), 'icl_loss': last.get('eval/loss_mean')})
  return {'objectives': objectives, 'runs': rows, 'kl_budgets': list(KL_BUDGETS),
          'min_completion_len': min_length}


def _fmt(value, digits=3):
  return 'n/a' if value is None else f'{value:.{digits}f}'


def markdown(summary) -> str:
  budgets = summary['kl_budgets']
  lines = ['| objective | ' + ' | '.join(f'best judge score at KL <= {b:g} (step)'
                                          for b in budgets) + ' |',
           '|---|' + '---|' * len(budgets)]
  for label, entry in sorted(summary['objectives'].items()):
    cells = [f'{_fmt(entry["budgets"][f"{b:g}"]["score"])} '
             f'({"n/a" if entry["budgets"][f"{b:g}"]["step"] is None else int(entry["budgets"][f"{b:g}"]["step"])})'
             for b in budgets]
    lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  lines += ['', '| run | objective | beta | judge score (before -> after) | accept rate | '
            'win rate vs ref | KL | length (symbols) | ICL accuracy before -> after | '
            'ICL loss before -> after |', '|---|---|---|---|---|---|---|---|---|---|']
  for r in summary['runs']:
    flag = ' (under the minimum)' if r['length_hacked'] else ''
    lines.append(
        f'| {r["name"]} | {r["objective"]} | {_fmt(r["beta"], 2)} | '
        f'{_fmt(r["score_before"])} -> {_fmt(r["score"])} | {_fmt(r["accept_before"])} -> '
        f'{_fmt(r["accept"])} | {_fmt(r["win_rate"])} | {_fmt(r["kl"], 2)} | '
        f'{_fmt(r["length"], 2)}{flag} | {_fmt(r["icl_accuracy_before"])} -> '
        f'{_fmt(r["icl_accuracy"])} | {_fmt(r["icl_loss_before"])} -> {_fmt(r["icl_loss"])} |')
  return '\n'.join(lines)


def plot(summary, png_path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7.5, 4.8))
  for i, (label, entry) in enumerate(sorted(summary['objectives'].items())):
    pts = np.array(entry['frontier'])
    style = '--' if 'offline' in label else '-'
    ax.step(pts[:, 0], pts[:, 1], where='post', ls=style, color=f'C{i % 10}', label=label)
  ax.set_xscale('symlog', linthresh=0.1)
  ax.set_xlabel('KL(policy || reference), nats per completion (sampled estimate)')
  ax.set_ylabel('best judge score at or below this KL')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  ax.set_title('REGBENCH preference fine-tuning: reward-KL frontier per objective')
  fig.tight_layout()
  fig.savefig(png_path, dpi=120)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--zoo', default='runs/preference_zoo')
  p.add_argument('--beta', default='runs/preference_beta')
  p.add_argument('--out', default='runs/preference_frontier')
  p.add_argument('--min_completion_len', type=float, default=6,
                 help='the judge minimum the length flag compares against (tiny: 6)')
  p.add_argument('--docs_png', default='docs/preference_frontier.png')
  args = p.parse_args(argv)
  runs = load_runs(args.zoo, args.beta)
  if not runs:
    p.error(f'no finished sweep members under {args.zoo} or {args.beta}')
  summary = summarise(runs, args.min_completion_len)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'frontier.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  text = markdown(summary)
  with open(os.path.join(args.out, 'frontier.md'), 'w') as f:
    f.write(text + '\n')
  png = os.path.join(args.out, 'frontier.png')
  plot(summary, png)
  if args.docs_png:
    shutil.copyfile(png, args.docs_png)
  print(text)
  print(f'wrote {args.out}/frontier.json, frontier.md, frontier.png')
  return summary


if __name__ == '__main__':
  main()
