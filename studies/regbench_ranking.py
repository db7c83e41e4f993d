r"""REGBENCH's architecture ranking (Akyürek et al. 2024, "In-Context Language Learning:
Architectures and Algorithms") at a budget where the plain transformer has started to learn
in context, and the effect of an n-gram head.

    python sweep.py --sweep configs/sweeps/regbench_zoo_long.py --workdir runs/regbench_zoo_long
    python -m studies.regbench_ranking --workdir runs/regbench_zoo_long

Reads every run under --workdir (one directory per sweep member) that scored the frozen test
suite during training (`eval/test/step_*.json`, written by `eval.train_suites=test`). For each
member: accuracy (the greedy next token is legal under the automaton) and total variation at
the last scored step, the in-context slope there (mean accuracy on strings >= 5 minus accuracy
on string 1, as in studies/regbench_transition.py) and the transition step (the first
scored step from which the slope stays >= --rise). Members are ranked by final accuracy; the
in-context n-gram baselines, scored on the same prompts, are listed with them.

Writes OUT/regbench_ranking.{json,md,png} (OUT defaults to --workdir): accuracy against
training step for every member, and accuracy by string index at the last scored step.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from studies.regbench_transition import LATE_FROM, read_steps, transition_step

from studies import runner

# What the paper says of the ranking, in its words; it gives its accuracies as figures only.
PAPER_CLAIMS = (
    'Transformers "significantly outperform neural sequence models with recurrent or '
    'convolutional representations on ICLL tasks"; their success relies on "n-gram heads", '
    'and hard-wiring n-gram heads into other models improves their in-context language learning.')


def parse_args(argv: Sequence[str]):
  p = argparse.ArgumentParser(prog='python -m studies.regbench_ranking',
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True, help='the sweep work directory')
  p.add_argument('--out', default='', help='output directory (default: --workdir)')
  p.add_argument('--rise', type=float, default=0.05,
                 help='in-context slope (late strings minus string 1) that marks the transition')
  args = p.parse_args(argv)
  if not os.path.isdir(args.workdir):
    p.error(f'--workdir={args.workdir!r} is not a directory')
  if not 0 < args.rise < 1:
    p.error(f'--rise={args.rise} is invalid: a number in (0, 1)')
  return args


def _param_count(run_dir: str) -> Optional[int]:
  import json
  path = os.path.join(run_dir, 'model_info.json')
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f).get('param_count')


def summarise(name: str, rows: List[Dict[str, Any]], rise: float,
              param_count: Optional[int] = None) -> Dict[str, Any]:
  """One member's line of the ranking from its scored steps (sorted by step)."""
  last = rows[-1]
  by_string = [np.nan if v is None else float(v) for v in last['by_string']]
  late = [v for v in by_string[LATE_FROM:] if np.isfinite(v)]
  return {
      'name': name, 'param_count': param_count, 'last_step': last['step'],
      'accuracy': last['accuracy'], 'tv': last['tv'], 'slope': last['slope'],
      'string_1': by_string[1] if len(by_string) > 1 and np.isfinite(by_string[1]) else None,
      'strings_late': float(np.mean(late)) if late else None,
      'transition_step': transition_step([r['step'] for r in rows],
                                         [r['slope'] for r in rows], rise),
      'steps': [r['step'] for r in rows], 'accuracy_by_step': [r['accuracy'] for r in rows],
      'slope_by_step': [r['slope'] for r in rows], 'by_string': last['by_string'],
      'baselines': last['baselines'], 'baseline_by_string': last['baseline_by_string'],
  }


def collect(workdir: str, rise: float) -> List[Dict[str, Any]]:
  """Every member run under workdir with scored steps, ranked by final accuracy (best first)."""
  members = []
  for name in sorted(os.listdir(workdir)):
    run_dir = os.path.join(workdir, name)
    if not os.path.isdir(os.path.join(run_dir, 'eval', 'test')):
      continue
    rows = read_steps(run_dir)
    if rows:
      members.append(summarise(name, rows, rise, _param_count(run_dir)))
  return sorted(members, key=lambda m: -m['accuracy'])


def _fmt(value, digits=3) -> str:
  return 'n/a' if value is None else f'{value:.{digits}f}'


def table(members: List[Dict[str, Any]], rise: float) -> str:
  steps = sorted({s for m in members for s in m['steps']})
  lines = ['| rank | run | parameters | steps | accuracy | TV | string 1 | strings >= '
           f'{LATE_FROM} | slope | transition | ' + ' | '.join(f'acc@{s}' for s in steps) + ' |',
           '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|' + '---:|' * len(steps)]
  for rank, m in enumerate(members, 1):
    by_step = dict(zip(m['steps'], m['accuracy_by_step']))
    lines.append(
        f'| {rank} | {m["name"]} | '
        f'{"n/a" if m["param_count"] is None else format(m["param_count"], ",")} | '
        f'{m["last_step"]:,} | '
        f'{_fmt(m["accuracy"])} | {_fmt(m["tv"])} | {_fmt(m["string_1"])} | '
        f'{_fmt(m["strings_late"])} | {_fmt(m["slope"])} | '
        f'{m["transition_step"] if m["transition_step"] is not None else "none"} | ' +
        ' | '.join(_fmt(by_step.get(s)) for s in steps) + ' |')
  if members:
    baselines = members[0]['baselines']
    lines += ['', 'in-context baselines (same prompts): ' + ', '.join(
        f'{k} {_fmt(v)}' for k, v in sorted(baselines.items(), key=lambda kv: -kv[1]))]
  lines += ['', f'transition: first scored step from which the slope stays >= {rise} '
            '("none": not by the last scored step)', '', f'paper: {PAPER_CLAIMS}']
  return '\n'.join(lines)


def plot(members: List[Dict[str, Any]], path: str) -> None:
  plt = runner.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
  for m in members:
    line, = axes[0].plot(m['steps'], m['accuracy_by_step'], 'o-', label=m['name'])
    ys = [np.nan if v is None else v for v in m['by_string']]
    axes[1].plot(range(len(ys)), ys, '-', color=line.get_color(), label=m['name'])
  if members:
    for name, style in (('bigram', '--'), ('trigram', ':')):
      value = members[0]['baselines'].get(name)
      if value is not None:
        axes[0].axhline(value, color='k', ls=style, lw=0.8, label=f'{name} (in context)')
      ys = members[0]['baseline_by_string'].get(name)
      if ys:
        axes[1].plot(range(len(ys)), [np.nan if v is None else v for v in ys], 'k' + style,
                     lw=0.8, label=f'{name} (in context)')
  axes[0].set_xlabel('training step')
  axes[0].set_ylabel('accuracy (greedy token legal)')
  axes[0].legend(fontsize=7)
  axes[1].set_xlabel('string index in prompt (last scored step)')
  axes[1].set_ylabel('accuracy')
  fig.suptitle('REGBENCH: every mixer at ~150k parameters, scored during training')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  members = collect(args.workdir, args.rise)
  if not members:
    print(f'error: no run under {args.workdir} has scored steps in eval/test (train the sweep '
          'configs/sweeps/regbench_zoo_long.py first)', file=sys.stderr)
    return 1
  runner.write_results(args.out or args.workdir, 'regbench_ranking',
                       {'rise': args.rise, 'paper': PAPER_CLAIMS, 'members': members},
                       table(members, args.rise), table_in_json=False,
                       plot=lambda path: plot(members, path))
  return 0


if __name__ == '__main__':
  sys.exit(main())
