r"""Garg et al. (2022), "What can transformers learn in-context? A case study of simple function
classes": the error-vs-examples curves of four function classes and the out-of-distribution
table of linear regression, one command.

    python -m studies.garg --out runs/repro/garg                     # reduced scale
    python -m studies.garg --out runs/repro/garg_std --variant standard --steps 0
                                                   # the paper's settings (500k steps; GPU)

For each of linear, sparse linear (3 non-zeros), decision-tree (depth 4) and 2-layer ReLU
network regression it trains one model (ordinary resumable work directories under OUT: a
second call reuses finished runs), scores it and Garg's baselines for that class on the same
fresh prompts at every number of in-context examples (normalised squared error: squared error /
d, / k for sparse), and scores the linear model on every out-of-distribution prompt family of
the paper's Section 4 (data/regression.py OOD_SUITES). Writes OUT/garg.{json,md} and
OUT/garg_curves.png, OUT/garg_ood.png.

The paper reports its results as curves (Figures 2, 4 and 5); where it states an outcome in its
text, that outcome is printed beside ours (PAPER below), with its scale.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Sequence

import numpy as np

from studies import runner

TASKS = ('linear_regression', 'sparse_linear_regression', 'decision_tree', 'relu2nn_regression')
OOD = ('in_distribution', 'skewed_covariance', 'scaled_x', 'scaled_y', 'noisy_labels',
       'half_subspace', 'orthant', 'opposite_orthant', 'orthogonal', 'overlapping')

# What the paper states (d = 20, 41 points, 12-layer / 256-wide GPT-2, 500k steps of batch 64
# with the curriculum). Its numbers are curves; these are its stated outcomes at k examples.
PAPER = {
    'linear_regression': 'matches least squares at every k (error ~0 from k = d = 20 on); '
                         'far ahead of 3-NN and averaging (Fig. 2)',
    'sparse_linear_regression': 'below least squares, close to Lasso; error ~0 from k ≈ 10 '
                                '(Fig. 5a)',
    'decision_tree': 'below greedy tree learning and XGBoost at every k (Fig. 5b)',
    'relu2nn_regression': 'close to a 2-layer network trained on the prompt by GD; better with '
                          'few examples (Fig. 5c)',
}
PAPER_OOD = {   # the paper's Section 4 as we read it (its Figure 4 and appendix give curves only)
    'in_distribution': 'matches least squares',
    'skewed_covariance': 'close to least squares',
    'scaled_x': 'error grows with the scale factor',
    'scaled_y': 'error grows with the scale factor',
    'noisy_labels': 'close to least squares',
    'half_subspace': 'close to least squares (error ~0 from k = d/2)',
    'orthant': 'close to least squares',
    'opposite_orthant': 'close to least squares',
    'orthogonal': 'close to least squares (which predicts 0)',
    'overlapping': 'low error (the query repeats an example)',
}


def parse_args(argv: Sequence[str]):
  p = argparse.ArgumentParser(prog='python -m studies.garg', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--out', required=True, help='output directory (runs and results)')
  p.add_argument('--variant', default='tiny', choices=('tiny', 'small', 'standard'),
                 help='model size and training settings of configs/<task>.py')
  p.add_argument('--steps', type=int, default=6000,
                 help='training steps per task (0: the variant\'s own)')
  p.add_argument('--n_dims', type=int, default=10, help='input dimension d (0: the variant\'s)')
  p.add_argument('--n_points', type=int, default=21,
                 help='examples per prompt (Garg: 2d + 1; 0: the variant\'s)')
  p.add_argument('--tasks', default=','.join(TASKS), help=f'comma list of {", ".join(TASKS)}')
  p.add_argument('--ood', default=','.join(OOD), help='suites for the linear model')
  p.add_argument('--num_prompts', type=int, default=1280)
  args = p.parse_args(argv)
  tasks = [t.strip() for t in args.tasks.split(',') if t.strip()]
  ood = [s.strip() for s in args.ood.split(',') if s.strip()]
  bad = [t for t in tasks if t not in TASKS]
  if bad or not tasks:
    p.error(f'--tasks={args.tasks!r} is invalid: a comma list of {", ".join(TASKS)}')
  bad = [s for s in ood if s not in OOD]
  if bad:
    p.error(f'--ood={args.ood!r} is invalid: a comma list of {", ".join(OOD)}')
  for name in ('steps', 'n_dims', 'n_points'):
    if getattr(args, name) < 0:
      p.error(f'--{name}={getattr(args, name)} is invalid: an integer >= 0')
  if args.num_prompts < 1:
    p.error(f'--num_prompts={args.num_prompts} is invalid: an integer >= 1')
  args.tasks, args.ood = tasks, ood
  return args


def task_config(task: str, args):
  from studies.sweeps import member_config
  overrides: Dict[str, Any] = {'train.progress': False}
  if args.steps:
    overrides['train.num_steps'] = args.steps
  if args.n_dims:
    overrides['task.n_dims'] = args.n_dims
  if args.n_points:
    overrides['task.n_points'] = args.n_points
  return member_config({'config': f'configs/{task}.py:{args.variant}', 'overrides': overrides},
                       {'name': task})


def positions(n_dims: int, n_points: int) -> List[int]:
  """The numbers of in-context examples the tables show: 1, d/2, d, 2d (when they exist)."""
  wanted = [1, n_dims // 2, n_dims, 2 * n_dims]
  return sorted({k for k in wanted if 0 <= k < n_points})


def _at(curve: Dict[str, list], k: int):
  value = curve['mean'][k] if k < len(curve['mean']) else None
  return None if value is None else float(value)


def _fmt(value) -> str:
  return 'n/a' if value is None else f'{value:.3f}'


def curves_table(result: Dict[str, Any], ks: Sequence[int]) -> str:
  names = ['model'] + sorted(n for n in result['curves'] if n != 'model')
  lines = ['| baseline | ' + ' | '.join(f'k={k}' for k in ks) + ' |',
           '|---|' + '---:|' * len(ks)]
  for name in names:
    lines.append(f'| {name} | ' + ' | '.join(_fmt(_at(result['curves'][name], k)) for k in ks)
                 + ' |')
  return '\n'.join(lines)


def ood_table(results: Dict[str, Dict[str, Any]], ks: Sequence[int]) -> str:
  head = ' | '.join(f'model k={k} | LS k={k}' for k in ks)
  lines = [f'| prompts | {head} | paper (d = 20, 12 layers, 500k steps) |',
           '|---|' + '---:|' * (2 * len(ks)) + '---|']
  for suite, result in results.items():
    cells = []
    for k in ks:
      cells.append(_fmt(_at(result['curves']['model'], k)))
      ls = result['curves'].get('least_squares')
      cells.append(_fmt(_at(ls, k)) if ls else 'n/a')
    lines.append(f'| {suite} | ' + ' | '.join(cells) + f' | {PAPER_OOD[suite]} |')
  return '\n'.join(lines)


def _plot_curves(results: Dict[str, Dict[str, Any]], path: str) -> None:
  plt = runner.pyplot()
  fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
  for ax, (task, result) in zip(axes[0], results.items()):
    xs = result['num_examples']
    for name, curve in sorted(result['curves'].items(), key=lambda kv: kv[0] != 'model'):
      ys = [np.nan if v is None else v for v in curve['mean']]
      ax.plot(xs, ys, lw=2.5 if name == 'model' else 1.2, label=name,
              color='black' if name == 'model' else None)
    ax.axvline(result['n_dims'], color='grey', ls=':', lw=0.8)
    ax.set_ylim(-0.05, 1.6)
    ax.set_title(task.replace('_', ' '))
    ax.set_xlabel('in-context examples')
    ax.legend(fontsize=7)
  axes[0][0].set_ylabel('squared error / normaliser')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _plot_ood(results: Dict[str, Dict[str, Any]], path: str) -> None:
  plt = runner.pyplot()
  cols = 5
  rows = -(-len(results) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.8 * rows), squeeze=False)
  for ax in axes.flat[len(results):]:
    ax.axis('off')
  for ax, (suite, result) in zip(axes.flat, results.items()):
    xs = result['num_examples']
    for name in ('model', 'least_squares', '3nn', 'averaging'):
      if name in result['curves']:
        ys = [np.nan if v is None else v for v in result['curves'][name]['mean']]
        ax.plot(xs, ys, lw=2.2 if name == 'model' else 1.1, label=name,
                color='black' if name == 'model' else None)
    ax.set_ylim(-0.05, 2.0)
    ax.set_title(suite.replace('_', ' '), fontsize=9)
  axes.flat[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from core import ConfigError
  try:
    configs = {t: task_config(t, args) for t in args.tasks}   # every config checked up front
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  from analysis.evaluators import get_evaluator
  from analysis.run_eval import evaluate_seed
  from training.loop import restore_run
  evaluator = get_evaluator('regression')
  curves, ood, timing = {}, {}, {}
  for task, config in configs.items():
    workdir = os.path.join(args.out, task)
    timing[task] = round(runner.train_run(config, workdir), 1)
    run = restore_run(workdir, log=lambda s: None)
    suites = ['in_distribution'] + ([s for s in args.ood if s != 'in_distribution']
                                    if task == 'linear_regression' else [])
    for suite in suites:
      result = runner.cached_json(
          os.path.join(workdir, 'eval', f'garg_{suite}_{args.num_prompts}.json'),
          lambda: evaluate_seed(run, 0, evaluator, suite, num_prompts=args.num_prompts,
                                seed=config.eval.seed))
      print(f'{task}/{suite}: model error at the last position '
            f'{_fmt(result["curves"]["model"]["mean"][-1])}')
      if suite == 'in_distribution':
        curves[task] = result
      if task == 'linear_regression' and suite in args.ood:
        ood[suite] = result
  first = next(iter(configs.values()))
  d, n = int(first.task.n_dims), int(first.task.n_points)
  ks = positions(d, n)
  lines = [f'Scale: d = {d}, {n} points per prompt, `configs/<task>.py:{args.variant}` '
           f'({first.model.num_layers} layers / {first.model.d_model} wide), '
           f'{first.train.num_steps} steps of batch {first.train.batch_size}; '
           f'{args.num_prompts} fresh prompts (the expensive baselines on fewer; see JSON).', '']
  for task, result in curves.items():
    took = f'trained in {timing[task]:.0f} s' if timing[task] >= 5 else 'run reused'
    lines += [f'#### {task} ({took})', '',
              curves_table(result, ks), '', f'paper: {PAPER[task]}', '']
  if ood:
    ood_ks = [k for k in ks if k > 0]
    lines += ['#### linear regression out of distribution', '', ood_table(ood, ood_ks), '']
  table = '\n'.join(lines)
  summary = {'args': vars(args), 'positions': ks, 'train_seconds': timing,
             'curves': curves, 'ood': ood, 'paper': PAPER, 'paper_ood': PAPER_OOD}
  runner.write_results(args.out, 'garg', summary, table, table_in_json=False)
  _plot_curves(curves, os.path.join(args.out, 'garg_curves.png'))
  if ood:
    _plot_ood(ood, os.path.join(args.out, 'garg_ood.png'))
  print(f'wrote {args.out}/garg_curves.png' + (', garg_ood.png' if ood else ''))
  return 0


if __name__ == '__main__':
  sys.exit(main())
