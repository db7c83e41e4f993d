r"""REGBENCH (Akyürek et al. 2024, "In-Context Language Learning: Architectures and
Algorithms"): when does a model start to learn the language in context? One command trains a
long run with the frozen test suite scored every `--every` steps, then reads accuracy by string
index at each of those steps.

    python -m studies.regbench_transition --out runs/repro/regbench --mixer attention \
        --steps 15000

The run is `configs/regbench.py:tiny` with only `train.num_steps`, `model.mixer` (and its
positions, by models.zoo.position_for) changed and the scheduled suite switched on
(`eval.every`, `eval.train_suites=test`); its work directory is OUT/<mixer>_<steps> (resumable:
a second call reuses it). A model that learns in context gets better at predicting a string the
more strings of the same language precede it; one that does not is flat over the string index.
The in-context slope at a step is mean accuracy on strings >= 5 minus accuracy on string 1
(string 0 has no earlier string to learn from and is left out); the transition step is the first
evaluated step where the slope reaches `--rise` (0.05) and stays at or above it at every later
evaluation. Writes OUT/<mixer>_<steps>_transition.{json,md,png}.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from studies import runner

LATE_FROM = 5     # strings >= this index count as "late" in the slope


def parse_args(argv: Sequence[str]):
  p = argparse.ArgumentParser(prog='python -m studies.regbench_transition',
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--out', required=True, help='output directory')
  p.add_argument('--mixer', default='attention', help='model.mixer (a name or a pattern)')
  p.add_argument('--steps', type=int, default=15000, help='training steps')
  p.add_argument('--every', type=int, default=1000, help='score the test suite every N steps')
  p.add_argument('--rise', type=float, default=0.05,
                 help='in-context slope (late strings minus string 1) that marks the transition')
  p.add_argument('--analyse_only', action='store_true',
                 help='read what the run has written so far; do not train')
  args = p.parse_args(argv)
  if args.steps < 1:
    p.error(f'--steps={args.steps} is invalid: an integer >= 1')
  if args.every < 1 or args.every > args.steps:
    p.error(f'--every={args.every} is invalid: an integer in 1..--steps ({args.steps})')
  if not 0 < args.rise < 1:
    p.error(f'--rise={args.rise} is invalid: a number in (0, 1)')
  return args


def run_config(args):
  from models.zoo import position_for
  from studies.sweeps import member_config
  overrides = {'train.num_steps': args.steps, 'train.checkpoint_every': args.every,
               'eval.every': args.every, 'eval.num_log_evals': 0, 'eval.train_suites': 'test',
               'train.progress': False}
  member = {'name': args.mixer, 'model.mixer': args.mixer,
            'model.position': position_for(args.mixer)}
  return member_config({'config': 'configs/regbench.py:tiny', 'overrides': overrides}, member)


def slope(by_string_accuracy: Sequence[Optional[float]]) -> Optional[float]:
  """Mean accuracy on strings >= LATE_FROM minus accuracy on string 1 (None if undefined)."""
  values = [np.nan if v is None else float(v) for v in by_string_accuracy]
  late = [v for v in values[LATE_FROM:] if np.isfinite(v)]
  if len(values) < 2 or not np.isfinite(values[1]) or not late:
    return None
  return float(np.mean(late) - values[1])


def transition_step(steps: Sequence[int], slopes: Sequence[Optional[float]],
                    rise: float) -> Optional[int]:
  """The first step from which every slope is >= rise; None if it never settles there."""
  found = None
  for step, value in zip(steps, slopes):
    if value is not None and value >= rise:
      if found is None:
        found = step
    else:
      found = None
  return found


def read_steps(workdir: str) -> List[Dict[str, Any]]:
  rows = []
  for path in glob.glob(os.path.join(workdir, 'eval', 'test', 'step_*.json')):
    match = re.search(r'step_(\d+)\.json$', path)
    if not match:
      continue
    with open(path) as f:
      result = json.load(f)
    metrics = result['metrics']
    model = metrics['model']
    rows.append({'step': int(match.group(1)), 'accuracy': model['accuracy'], 'tv': model['tv'],
                 'by_string': model['by_string']['accuracy'],
                 'slope': slope(model['by_string']['accuracy']),
                 'baselines': {k: v['accuracy'] for k, v in metrics.items() if k != 'model'},
                 'baseline_by_string': {k: v['by_string']['accuracy']
                                        for k, v in metrics.items() if k != 'model'}})
  return sorted(rows, key=lambda r: r['step'])


def _fmt(value, digits=3) -> str:
  return 'n/a' if value is None else f'{value:.{digits}f}'


def table(rows: List[Dict[str, Any]], shown_strings=(0, 1, 2, 5, 9)) -> str:
  head = ' | '.join(f'string {i}' for i in shown_strings)
  lines = [f'| step | accuracy | TV | {head} | slope |', '|---:|---:|---:|' +
           '---:|' * len(shown_strings) + '---:|']
  for r in rows:
    cells = [_fmt(r['by_string'][i]) if i < len(r['by_string']) else 'n/a'
             for i in shown_strings]
    lines.append(f'| {r["step"]} | {_fmt(r["accuracy"])} | {_fmt(r["tv"])} | ' +
                 ' | '.join(cells) + f' | {_fmt(r["slope"])} |')
  if rows:
    b = rows[-1]['baselines']
    lines.append('')
    lines.append('baselines (same prompts): ' + ', '.join(
        f'{k} {_fmt(v)}' for k, v in sorted(b.items())))
  return '\n'.join(lines)


def plot(rows: List[Dict[str, Any]], path: str, title: str) -> None:
  plt = runner.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4))
  cmap = plt.get_cmap('viridis')
  for j, r in enumerate(rows):
    ys = [np.nan if v is None else v for v in r['by_string']]
    axes[0].plot(range(len(ys)), ys, color=cmap(j / max(len(rows) - 1, 1)),
                 label=f'step {r["step"]}' if j in (0, len(rows) - 1) or j % 3 == 0 else None)
  if rows:
    for name in ('bigram', 'trigram'):
      ys = rows[-1]['baseline_by_string'].get(name)
      if ys:
        axes[0].plot(range(len(ys)), [np.nan if v is None else v for v in ys], 'k--' if
                     name == 'bigram' else 'k:', label=f'{name} (in context)')
  axes[0].set_xlabel('string index in prompt')
  axes[0].set_ylabel('accuracy (greedy token legal)')
  axes[0].legend(fontsize=7)
  steps = [r['step'] for r in rows]
  axes[1].plot(steps, [r['accuracy'] for r in rows], 'o-', label='accuracy')
  axes[1].plot(steps, [np.nan if r['slope'] is None else r['slope'] for r in rows], 's-',
               label=f'slope: strings >= {LATE_FROM} minus string 1')
  axes[1].axhline(0, color='grey', lw=0.6)
  axes[1].set_xlabel('training step')
  axes[1].legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from core import ConfigError
  try:
    config = run_config(args)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  name = f'{args.mixer.replace(",", "+")}_{args.steps}'
  workdir = os.path.join(args.out, name)
  seconds = None if args.analyse_only else round(runner.train_run(config, workdir), 1)
  rows = read_steps(workdir)
  if not rows:
    print(f'error: no scored steps in {workdir}/eval/test', file=sys.stderr)
    return 1
  step = transition_step([r['step'] for r in rows], [r['slope'] for r in rows], args.rise)
  md = table(rows) + (f'\n\ntransition (slope >= {args.rise} from then on): step {step}'
                      if step is not None else f'\n\nno transition (slope >= {args.rise}) yet')
  result = {'mixer': args.mixer, 'steps': args.steps, 'rise': args.rise,
            'transition_step': step, 'train_seconds': seconds, 'rows': rows,
            'params': config.model.to_dict() if hasattr(config.model, 'to_dict') else None}
  runner.write_results(args.out, f'{name}_transition', result, md, table_in_json=False,
                       plot=lambda path: plot(rows, path, f'REGBENCH {args.mixer}: accuracy by '
                                              'string index during training'))
  return 0


if __name__ == '__main__':
  sys.exit(main())
