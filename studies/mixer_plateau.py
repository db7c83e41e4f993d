r"""When each sequence mixer leaves the initial plateau of in-context linear regression, and how
low it gets (Lee et al. 2024, "Exploring the relationship between model architecture and
in-context learning ability": every architecture learns in context, at different speeds).

    python sweep.py --sweep configs/sweeps/mixer_zoo_long.py --workdir runs/mixer_zoo_long
    python -m studies.mixer_plateau --workdir runs/mixer_zoo_long

Reads every run under --workdir (one directory per sweep group, several vmapped seeds each):
the scheduled evaluations in metrics.jsonl (`eval/error_last`: the normalised squared error
at the last position, i.e. with n_points - 1 = 15 in-context examples, on the same
`eval.train_prompts` fixed prompts at every evaluation).

Plateau exit. The plateau is the predict-zero solution: the error of always answering 0 on
those same prompts, E0 = mean(y_last^2) / d (about 1; recomputed here from the config, since
the prompts are a deterministic function of `eval.seed`). A seed leaves the plateau at the
first scheduled evaluation whose err@15 is below `fraction` x E0 (0.8 by default) and is still
below it at the next evaluation (so one lucky evaluation does not count); a seed that never
does has no exit step. Final error: err@15 at the last scheduled evaluation. Both are given
per seed and as the mean over seeds (the mean exit step over the seeds that left; how many
left is reported beside it).

Writes OUT/mixer_plateau.{json,md} and OUT/mixer_plateau.png (err@15 against step, one panel
line per mixer: the seed mean, each seed faint), OUT defaulting to --workdir.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, Optional, Sequence

import numpy as np

from studies import runner

FRACTION = 0.8


def plateau_exit_step(steps: Sequence[int], errors: Sequence[float], reference: float,
                      fraction: float = FRACTION) -> Optional[int]:
  """The first step whose error is below fraction x reference and stays below it at the next
  evaluation (the last evaluation counts on its own); None when there is no such step."""
  steps = np.asarray(steps)
  below = np.asarray(errors, np.float64) < fraction * reference
  for i in range(len(below)):
    if below[i] and (i + 1 == len(below) or below[i + 1]):
      return int(steps[i])
  return None


def read_run(run_dir: str) -> Optional[Dict[str, Any]]:
  """Config, scheduled-evaluation steps and err@last (steps x seeds) of one run; None when
  the directory holds no scheduled evaluations."""
  from training.loop import load_config
  from training.workdir import read_metrics
  rows = [r for r in read_metrics(os.path.join(run_dir, 'metrics.jsonl'), warn=lambda _: None)
          if r.get('kind') == 'eval' and 'eval/error_last' in r]
  if not rows:
    return None
  by_step = {}
  for row in rows:   # a resumed run may repeat a step: keep the last row
    by_step[row['step']] = np.atleast_1d(np.asarray(row['eval/error_last'], np.float64))
  steps = np.array(sorted(by_step))
  return {'config': load_config(run_dir), 'steps': steps,
          'errors_SxN': np.stack([by_step[s] for s in steps])}


def zero_error(config) -> float:
  """err@last of always answering 0, on the prompts of the run's scheduled evaluations."""
  import jax
  from data import get_task
  task = get_task(config.task)
  batch = task.sample(jax.random.key(config.eval.seed), config.eval.train_prompts,
                      config.train.num_steps)
  ys_B = np.asarray(batch['ys_BxN'])[:, -1]
  return float(np.mean(np.square(ys_B)) / task.error_normaliser())


def analyse(workdir: str, fraction: float = FRACTION) -> Dict[str, Any]:
  results = {}
  for name in sorted(os.listdir(workdir)):
    run_dir = os.path.join(workdir, name)
    if not os.path.isfile(os.path.join(run_dir, 'metrics.jsonl')):
      continue
    run = read_run(run_dir)
    if run is None:
      continue
    config, steps, errors = run['config'], run['steps'], run['errors_SxN']
    reference = zero_error(config)
    exits = [plateau_exit_step(steps, errors[:, i], reference, fraction)
             for i in range(errors.shape[1])]
    left = [s for s in exits if s is not None]
    final = errors[-1]
    results[name] = {
        'mixer': config.model.mixer, 'd_model': config.model.d_model,
        'position': config.model.position, 'num_steps': int(config.train.num_steps),
        'last_step': int(steps[-1]), 'finished': int(steps[-1]) >= int(config.train.num_steps),
        'num_seeds': int(errors.shape[1]), 'zero_error': reference,
        'exit_steps': exits, 'num_left': len(left),
        'mean_exit_step': float(np.mean(left)) if left else None,
        'final_errors': final.tolist(), 'mean_final_error': float(final.mean()),
        'steps': steps.tolist(), 'errors': errors.T.tolist(),
    }
  return results


def table(results: Dict[str, Any], fraction: float = FRACTION) -> str:
  lines = [f'| mixer | d_model | seeds | steps | left the plateau (err@15 < {fraction:g} x '
           f'predict-zero) | exit step, mean | exit step per seed | final err@15, mean | '
           'final err@15 per seed |', '|---|---|---|---|---|---|---|---|---|']
  order = sorted(results, key=lambda n: (results[n]['mean_exit_step'] is None,
                                         results[n]['mean_exit_step'] or 0,
                                         results[n]['mean_final_error']))
  for name in order:
    r = results[name]
    exits = ', '.join('—' if s is None else str(s) for s in r['exit_steps'])
    finals = ', '.join(f'{v:.3f}' for v in r['final_errors'])
    mean_exit = '—' if r['mean_exit_step'] is None else f'{r["mean_exit_step"]:,.0f}'
    steps = f'{r["last_step"]:,}' + ('' if r['finished'] else f' of {r["num_steps"]:,}')
    lines.append(f'| {name} | {r["d_model"]} | {r["num_seeds"]} | {steps} | '
                 f'{r["num_left"]}/{r["num_seeds"]} | {mean_exit} | {exits} | '
                 f'{r["mean_final_error"]:.3f} | {finals} |')
  return '\n'.join(lines)


def plot(results: Dict[str, Any], png_path: str, fraction: float = FRACTION) -> None:
  plt = runner.pyplot()
  fig, ax = plt.subplots(figsize=(8, 5))
  colors = plt.get_cmap('tab10').colors
  for i, (name, r) in enumerate(sorted(results.items())):
    color = colors[i % len(colors)]
    errors = np.asarray(r['errors'])
    for curve in errors:
      ax.plot(r['steps'], curve, color=color, alpha=0.25, linewidth=0.8)
    ax.plot(r['steps'], errors.mean(0), color=color, linewidth=1.8, label=name)
  if results:
    reference = float(np.mean([r['zero_error'] for r in results.values()]))
    ax.axhline(fraction * reference, color='k', linestyle=':', linewidth=1,
               label=f'{fraction:g} x predict-zero')
  ax.set_xlabel('training step')
  ax.set_ylabel('normalised squared error at 15 examples')
  ax.set_ylim(0, 1.3)
  ax.set_title('In-context linear regression (d=8): leaving the plateau, per mixer')
  ax.legend(fontsize=7, ncol=3)
  fig.tight_layout()
  fig.savefig(png_path, dpi=120)
  plt.close(fig)


def parse_args(argv):
  p = argparse.ArgumentParser(prog='python -m studies.mixer_plateau', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True, help='the sweep directory (one run per member)')
  p.add_argument('--out', default='', help='output directory (default: --workdir)')
  p.add_argument('--fraction', type=float, default=FRACTION,
                 help='a seed leaves the plateau below this fraction of the predict-zero error')
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if not 0 < args.fraction < 1:
    print(f'error: --fraction={args.fraction} is invalid: must be in (0, 1)', file=sys.stderr)
    return 2
  if not os.path.isdir(args.workdir):
    print(f'error: --workdir={args.workdir} is not a directory', file=sys.stderr)
    return 2
  results = analyse(args.workdir, args.fraction)
  if not results:
    print(f'error: no run with scheduled evaluations under {args.workdir}', file=sys.stderr)
    return 1
  runner.write_results(args.out or args.workdir, 'mixer_plateau',
                       {'fraction': args.fraction, 'runs': results},
                       table(results, args.fraction), table_in_json=False,
                       plot=lambda path: plot(results, path, args.fraction))
  return 0


if __name__ == '__main__':
  sys.exit(main())
