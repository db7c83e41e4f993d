r"""The Bayesian prism (Panwar, Ahuja and Goyal, ICLR 2024, "In-Context Learning through the
Bayesian Prism"): a transformer trained on a mixture of dense and sparse linear regression
follows the Bayes-optimal predictor of the mixture.

    python -m studies.bayesian_prism --out runs/repro/bayesian_prism

The paper's claim (their DR + SR mixture): on sparse prompts the mixture-trained model behaves
like the sparse-regression solver, on dense prompts like least squares, and in both cases like
the posterior mean of the mixture prior (PME), which it tracks more closely than either
class's own solver tracks it.

Trains `configs/mixture_regression.py:tiny` (d = 8, weights 0.5 dense N(0, I_8) / 0.5
2-sparse, noise 0.1, 16 points, 3 layers / 64 wide, 6,000 steps with a dimension curriculum;
Panwar et al. train Garg et al.'s 12-layer, 256-wide model at d = 20) as an ordinary run under
OUT/mixture (a second call reuses it), then evaluates it on dense-only, sparse-only and
mixed prompts beside: the exact mixture Bayes predictor (`bayes`, enumerating all C(8, 2) = 28
supports), each class's own Bayes predictor (`bayes_dense` = ridge at alpha = noise variance;
`bayes_sparse`), least squares and Lasso (alpha 0.1 and 0.01, scikit-learn's objective).
Reports the error of each (squared error / E[y^2] of the prompt's class: d for dense, k for
sparse) and the model's squared distance to each, per number of in-context examples, and the
mixture posterior's probability of the sparse class. Writes OUT/bayesian_prism.{json,md,png}.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict

import numpy as np

from studies import runner

CONFIG = 'configs/mixture_regression.py:tiny'
PREDICTORS = ('bayes', 'bayes_dense', 'bayes_sparse', 'least_squares', 'lasso', 'lasso_0.01')
PROMPT_SETS = {'dense': (1.0, 0.0), 'sparse': (0.0, 1.0), 'mixture': None}
TABLE_POSITIONS = (1, 2, 3, 4, 6, 8, 10, 15)


def evaluate(run, config, num_prompts: int, seed: int) -> Dict[str, Any]:
  """Errors, distances and the class posterior on each prompt set, per position."""
  import jax
  from analysis.base import make_model_fns
  from analysis.stats import bootstrap_ci
  from baselines.regression import get_baselines
  from training.loop import seed_model
  setup = run['setup']
  task = setup.task.bind({k: v[0] for k, v in setup.task_values().items()})
  model = make_model_fns(seed_model(run, 0), task)
  baselines = get_baselines(task.name, config)
  require_names = [n for n in PREDICTORS if n not in baselines]
  if require_names:
    raise ValueError(f'missing baselines {require_names}')

  def summary(values_SxN):
    mean, lo, hi = bootstrap_ci(values_SxN, num_resamples=1000, seed=0)
    return {'mean': mean.tolist(), 'lo': lo.tolist(), 'hi': hi.tolist()}

  result = {}
  for set_name, weights in PROMPT_SETS.items():
    prompt_task = task if weights is None else task.with_weights(weights)
    normaliser = prompt_task.error_normaliser()
    preds = {name: [] for name in ('model',) + PREDICTORS}
    ys, sparse_probability = [], []
    for block in range(int(np.ceil(num_prompts / 256))):
      key = jax.random.fold_in(jax.random.key(seed), block)
      # 'in_distribution' prompts: the curriculum finished (all d dims, all points).
      batch = prompt_task.sample_ood(key, 256, 'in_distribution')
      ys.append(np.asarray(batch['ys_BxN'], np.float64))
      preds['model'].append(np.asarray(task.predictions(model.predict(batch)), np.float64))
      for name in PREDICTORS:
        preds[name].append(np.asarray(baselines[name](batch['xs_BxNxD'], batch['ys_BxN']),
                                      np.float64))
      probs = baselines['bayes'].class_posterior(batch['xs_BxNxD'], batch['ys_BxN'])
      sparse_probability.append(np.asarray(probs[..., list(task.components).index('sparse')]))
    ys_SxN = np.concatenate(ys)[:num_prompts]
    preds = {k: np.concatenate(v)[:num_prompts] for k, v in preds.items()}
    result[set_name] = {
        'normaliser': normaliser,
        'error': {k: summary((p - ys_SxN) ** 2 / normaliser) for k, p in preds.items()},
        'distance': {k: summary((preds['model'] - preds[k]) ** 2 / normaliser)
                     for k in PREDICTORS},
        'posterior_sparse': np.concatenate(sparse_probability)[:num_prompts].mean(0).tolist(),
    }
  return result


def _avg(curve, first=1):
  return float(np.mean(curve['mean'][first:]))


def _table(result) -> str:
  lines = []
  names = ('model',) + PREDICTORS
  for set_name in PROMPT_SETS:
    entry = result['evaluation'][set_name]
    lines.append(f'**{set_name} prompts** (squared error / {entry["normaliser"]:g}; posterior '
                 'P(sparse) from the exact Bayes predictor)')
    lines.append('')
    lines.append('| examples | ' + ' | '.join(names) + ' | P(sparse) |')
    lines.append('|---:|' + '---:|' * (len(names) + 1))
    for p in TABLE_POSITIONS:
      cells = [f'{entry["error"][n]["mean"][p]:.3f}' for n in names]
      lines.append(f'| {p} | ' + ' | '.join(cells) + f' | {entry["posterior_sparse"][p]:.2f} |')
    lines.append('')
  lines.append('**model\'s squared distance to each predictor** (normalised as the errors, mean '
               'over 1..15 examples)')
  lines.append('')
  lines.append('| prompts | ' + ' | '.join(PREDICTORS) + ' |')
  lines.append('|---|' + '---:|' * len(PREDICTORS))
  for set_name in PROMPT_SETS:
    entry = result['evaluation'][set_name]
    lines.append(f'| {set_name} | ' + ' | '.join(f'{_avg(entry["distance"][n]):.4f}'
                                               for n in PREDICTORS) + ' |')
  return '\n'.join(lines)


def _plot(result, path) -> None:
  plt = runner.pyplot()
  fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
  styles = {'model': ('black', '-', 2.4), 'bayes': ('C0', '--', 1.8),
            'bayes_dense': ('C1', ':', 1.5), 'bayes_sparse': ('C2', ':', 1.5),
            'least_squares': ('C3', '-', 1.2), 'lasso': ('C4', '-', 1.0),
            'lasso_0.01': ('C5', '-', 1.0)}
  for column, set_name in enumerate(('dense', 'sparse')):
    entry = result['evaluation'][set_name]
    x = np.arange(len(entry['error']['model']['mean']))
    ax = axes[0, column]
    for name, curve in entry['error'].items():
      color, style, width = styles[name]
      ax.plot(x, curve['mean'], color=color, ls=style, lw=width, label=name)
      ax.fill_between(x, curve['lo'], curve['hi'], color=color, alpha=0.15, lw=0)
    ax.set_ylim(-0.02, 1.3)
    ax.set_title(f'{set_name} prompts: error', fontsize=10)
    ax.set_xlabel('in-context examples')
    ax.set_ylabel(f'squared error / {entry["normaliser"]:g}')
    ax.grid(alpha=0.3)
    ax = axes[1, column]
    for name, curve in entry['distance'].items():
      color, style, width = styles[name]
      ax.plot(x[1:], np.maximum(curve['mean'][1:], 1e-6), color=color, ls=style, lw=width,
              label=f'to {name}')
    ax.set_yscale('log')
    ax.set_title(f'{set_name} prompts: model\'s squared distance', fontsize=10)
    ax.set_xlabel('in-context examples')
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=8)
  axes[1, 0].legend(fontsize=8)
  fig.suptitle('transformer trained on 0.5 dense + 0.5 2-sparse linear regression (d=8)',
               fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', required=True)
  parser.add_argument('--steps', type=int, default=0, help='0: the config\'s (6,000)')
  parser.add_argument('--num_prompts', type=int, default=1280)
  args = parser.parse_args(argv)
  from training.loop import restore_run
  from studies.sweeps import member_config
  overrides = {'train.progress': False}
  if args.steps:
    overrides['train.num_steps'] = args.steps
  config = member_config({'config': CONFIG, 'overrides': overrides}, {'name': 'prism'})
  workdir = os.path.join(args.out, 'mixture')
  print(f'trained in {runner.train_run(config, workdir):.0f}s')
  run = restore_run(workdir, log=lambda s: None)
  start = time.time()
  evaluation = evaluate(run, config, args.num_prompts, seed=config.eval.seed)
  result = {'config': CONFIG, 'step': run['step'], 'num_prompts': args.num_prompts,
            'n_dims': int(config.task.n_dims), 'sparsity': int(config.task.sparsity),
            'noise_std': float(config.task.noise_std), 'evaluation': evaluation,
            'eval_seconds': round(time.time() - start, 1)}
  runner.write_results(args.out, 'bayesian_prism', result, _table(result),
                       plot=lambda path: _plot(result, path))
  return 0


if __name__ == '__main__':
  sys.exit(main())
