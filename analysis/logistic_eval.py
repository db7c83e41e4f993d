"""Accuracy and cross-entropy curves on in-context binary classification (eval family 'logistic').

Task: logistic_regression (data/logistic.py; TART's synthetic logistic regression and noiseless
linear classification). For every number i of in-context examples, the prediction of the class
of x_i from x_i and the pairs before it, averaged over fresh prompts of the finished curriculum,
for the model and each predictor of baselines/logistic.py plus the oracle that knows w (the
Bayes classifier of the task: an upper bound on accuracy, a lower bound on cross-entropy), each
with a 95% percentile-bootstrap interval over prompts.

Metrics: accuracy (1 when the sign of the logit names the class, 0.5 for logit 0) and
cross-entropy in nats of sigmoid(logit) (probabilistic predictors only: the model, logistic
regression, Laplace, oracle).

Suites:
  in_distribution   the training prompt distribution
  label_noise       every label (context and query) flipped with probability LABEL_NOISE;
                    the oracle knows the flip rate. TART reports its module to be robust to
                    noisy in-context labels.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, Iterable, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from analysis.base import GENERATION_BLOCK, ModelFns, draw_in_blocks
from analysis.stats import ci_entry as _ci
from core import ConfigError, require

SUITES: Tuple[str, ...] = ('in_distribution', 'label_noise')
LABEL_NOISE = 0.1
SUITE_DESCRIPTIONS = {
    'in_distribution': 'training prompt distribution',
    'label_noise': f'every label flipped with probability {LABEL_NOISE}',
}


def suite_task(task, suite: str):
  """The task whose prompts the suite draws (label noise: the same task with flips)."""
  if suite not in SUITES:
    raise ConfigError(f'eval suite {suite!r} is invalid: one of {", ".join(SUITES)}')
  return task.bind({'flip_prob': LABEL_NOISE}) if suite == 'label_noise' else task


@functools.lru_cache(maxsize=16)
def _sampler(task):
  return jax.jit(lambda key: task.sample_eval(key, GENERATION_BLOCK))


def draw_prompts(task, num_prompts: int, seed: int) -> Dict[str, np.ndarray]:
  """num_prompts prompts (with their 'w_BxD') as numpy arrays, deterministic in seed."""
  def sample_block(key):
    batch, functions = _sampler(task)(key)
    return {**batch, **functions}
  return draw_in_blocks(sample_block, num_prompts, seed)


def predictors(model: ModelFns, task) -> Dict[str, Tuple[Callable, bool]]:
  """name -> (fn(prompts) -> logits_RxN, probabilistic): model, oracle and baselines."""
  from baselines.logistic import get_baselines

  def model_logits(p):
    batch = {k: jnp.asarray(p[k]) for k in ('xs_BxNxD', 'ys_BxN', 'targets_BxN',
                                            'point_mask_BxN')}
    return task.logits(model.predict(batch))

  oracle = jax.jit(task.oracle_logits)
  out = {'model': (model_logits, True),
         'oracle (true w)': (lambda p: oracle(jnp.asarray(p['w_BxD']),
                                              jnp.asarray(p['xs_BxNxD'])), True)}
  for name, fn in get_baselines(task).items():
    out[name] = ((lambda p, fn=fn: fn(jnp.asarray(p['xs_BxNxD']),
                                      jnp.asarray(p['targets_BxN']))), fn.probabilistic)
  return out


def run_suite(suite: str, model: ModelFns, task, config, *, num_prompts: int, seed: int,
              batch_size: int) -> Dict[str, Any]:
  """Accuracy and cross-entropy vs number of in-context examples, model and baselines.

  Returns {'suite', 'task', 'label_model', 'n_dims', 'n_points', 'weight_scale',
  'flip_prob', 'num_prompts', 'num_examples': [0..N-1], 'curves': {name: {'accuracy':
  {'mean', 'lo', 'hi'}, 'cross_entropy': {...} or None}}, 'description'}.
  """
  del config
  eval_task = suite_task(task, suite)
  require(isinstance(num_prompts, int) and num_prompts >= 1, 'eval.num_prompts', num_prompts,
          'an integer >= 1')
  require(isinstance(batch_size, int) and batch_size >= 1, 'eval.batch_size', batch_size,
          'an integer >= 1')
  prompts = draw_prompts(eval_task, num_prompts, seed)
  size = min(batch_size, num_prompts)
  curves = {}
  for name, (fn, probabilistic) in predictors(model, eval_task).items():
    parts = []
    for start in range(0, num_prompts, size):
      rows = np.arange(start, start + size)
      rows = np.where(rows < num_prompts, rows, start)   # pad: one compilation per predictor
      logits = np.asarray(fn({k: v[rows] for k, v in prompts.items()}), np.float64)
      parts.append(logits[:min(size, num_prompts - start)])
    logits_SxN = np.concatenate(parts)
    targets_SxN = prompts['targets_BxN'].astype(np.float64)
    accuracy_SxN = np.where(logits_SxN > 0, targets_SxN,
                            np.where(logits_SxN < 0, 1.0 - targets_SxN, 0.5))
    entry = {'accuracy': _ci(accuracy_SxN), 'cross_entropy': None}
    if probabilistic:
      with np.errstate(over='ignore'):
        ce_SxN = np.where(targets_SxN > 0.5, np.logaddexp(0.0, -logits_SxN),
                          np.logaddexp(0.0, logits_SxN))
      if np.all(np.isfinite(ce_SxN)):
        entry['cross_entropy'] = _ci(ce_SxN)
    curves[name] = entry
  return {
      'suite': suite,
      'task': task.name,
      'label_model': eval_task.label_model,
      'n_dims': int(task.n_dims),
      'n_points': int(task.n_points),
      'weight_scale': float(eval_task.weight_scale),
      'flip_prob': float(eval_task.flip_prob),
      'num_prompts': int(num_prompts),
      'num_examples': list(range(task.n_points)),
      'curves': curves,
      'description': SUITE_DESCRIPTIONS[suite],
  }


def accuracy_table(result: Dict[str, Any], positions: Iterable[int],
                   metric: str = 'accuracy') -> str:
  """Markdown table: a row per predictor, a column per number of in-context examples."""
  positions = list(positions)
  for position in positions:
    require(position in result['num_examples'], 'positions', position,
            f'numbers of in-context examples in 0..{result["num_examples"][-1]}')
  lines = ['| predictor | ' + ' | '.join(f'k={k}' for k in positions) + ' |',
           '|---|' + '---:|' * len(positions)]
  for name, curve in result['curves'].items():
    entry = curve[metric]
    if entry is None:
      continue
    lines.append(f'| {name} | ' + ' | '.join(f'{entry["mean"][k]:.3f}' for k in positions)
                 + ' |')
  return '\n'.join(lines)


def summary(result: Dict[str, Any]) -> str:
  last = result['num_examples'][-1]
  picks = sorted({1, min(4, last), min(result['n_dims'], last), last // 2, last})
  return (f'{result["suite"]}: {result["num_prompts"]} prompts ({result["description"]}); '
          f'accuracy at k in-context examples\n' + accuracy_table(result, picks))


def plot(result: Dict[str, Any], png_path: str) -> None:
  """Accuracy and cross-entropy vs in-context examples: model (black), oracle (dashed) and
  baselines, with shaded 95% intervals."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(11.5, 4.2))
  FigureCanvasAgg(fig)
  x = np.asarray(result['num_examples'])
  for panel, (metric, ylabel) in enumerate((('accuracy', 'accuracy'),
                                            ('cross_entropy', 'cross-entropy (nats)'))):
    ax = fig.add_subplot(1, 2, panel + 1)
    for index, (name, curve) in enumerate(result['curves'].items()):
      entry = curve[metric]
      if entry is None:
        continue
      style = dict(color='C%d' % (index % 10), lw=1.5)
      if name == 'model':
        style = dict(color='black', lw=2.4, zorder=3)
      elif name.startswith('oracle'):
        style = dict(color='gray', lw=1.5, ls='--')
      ax.plot(x, entry['mean'], label=name, **style)
      ax.fill_between(x, entry['lo'], entry['hi'], color=style['color'], alpha=0.15, lw=0)
    if metric == 'accuracy':
      ax.axhline(0.5, color='gray', lw=0.8, ls=':')
    else:
      ax.axhline(math.log(2), color='gray', lw=0.8, ls=':')
      ax.set_ylim(0, 1.0)
    ax.set_xlabel('number of in-context examples')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if panel == 0:
      ax.legend(fontsize=7, loc='lower right')
  fig.suptitle(f'{result["task"]} ({result["label_model"]}, d={result["n_dims"]}, weight scale '
               f'{result["weight_scale"]:g}, flips {result["flip_prob"]:g}): {result["suite"]}, '
               f'{result["num_prompts"]} prompts', fontsize=10)
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)


def seed_curves(result: Dict[str, Any]) -> Dict[str, Tuple[list, list]]:
  """The model's accuracy and cross-entropy curves: what eval.py averages across seeds."""
  curves = result['curves']['model']
  x = list(result['num_examples'])
  return {'model accuracy': (x, curves['accuracy']['mean']),
          'model cross-entropy': (x, curves['cross_entropy']['mean'])}


def plot_accuracy_panels(results, png_path: str) -> None:
  """One accuracy panel per result (e.g. logistic and linear classification) side by side."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(5.8 * len(results), 4.2))
  FigureCanvasAgg(fig)
  for panel, result in enumerate(results):
    ax = fig.add_subplot(1, len(results), panel + 1)
    x = np.asarray(result['num_examples'])
    for index, (name, curve) in enumerate(result['curves'].items()):
      entry = curve['accuracy']
      style = dict(color='C%d' % (index % 10), lw=1.5)
      if name == 'model':
        style = dict(color='black', lw=2.4, zorder=3)
      elif name.startswith('oracle'):
        style = dict(color='gray', lw=1.5, ls='--')
      ax.plot(x, entry['mean'], label=name, **style)
      ax.fill_between(x, entry['lo'], entry['hi'], color=style['color'], alpha=0.15, lw=0)
    ax.axhline(0.5, color='gray', lw=0.8, ls=':')
    ax.set_xlabel('number of in-context examples')
    ax.set_ylabel('accuracy')
    ax.set_title(f'{result["label_model"]} (d={result["n_dims"]}, weight scale '
                 f'{result["weight_scale"]:g}): {result["suite"]}, {result["num_prompts"]} '
                 'prompts', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc='lower right')
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)


def main(argv=None) -> None:
  """Tables (accuracy, cross-entropy) of saved results and one figure of their accuracy:
  python -m analysis.logistic_eval RESULT.json [...] --positions 1,4,8,16,31 --png out.png"""
  import argparse
  import json
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument('results', nargs='+')
  parser.add_argument('--positions', default='1,2,4,8,16,31')
  parser.add_argument('--png', default='')
  args = parser.parse_args(argv)
  positions = [int(p) for p in args.positions.split(',')]
  results = []
  for path in args.results:
    with open(path) as f:
      results.append(json.load(f))
    result = results[-1]
    for metric in ('accuracy', 'cross_entropy'):
      print(f'\n{path}: {metric} ({result["label_model"]}, {result["suite"]}, '
            f'{result["num_prompts"]} prompts, checkpoint step {result.get("checkpoint_step")})')
      print(accuracy_table(result, positions, metric))
  if args.png:
    plot_accuracy_panels(results, args.png)
    print(f'wrote {args.png}')


if __name__ == '__main__':
  main()
