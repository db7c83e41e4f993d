"""Accuracy curves of a trained model against classical learners on in-context Boolean
functions (Bhattamishra et al. 2024; data/boolean.py, baselines/boolean.py).

For every number i of in-context examples: the accuracy of the prediction of y_i from x_i and
the pairs before it (the sign of the read-out; a predictor's 0, "undetermined", scores 1/2),
averaged over fresh prompts, with a 95% bootstrap interval over prompts.

Suites:
  in_distribution   the training distribution
  uniform_inputs    inputs uniform on {-1, 1}^n without planted points (differs from
                    in_distribution for conjunctions and disjunctions only; the Bayes baseline
                    then uses the uniform input distribution as well)
"""
from __future__ import annotations

import copy
import functools
import math
from typing import Callable, Dict, Iterable, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from analysis.base import GENERATION_BLOCK, ModelFns, draw_in_blocks
from core import ConfigError, require

SUITES: Tuple[str, ...] = ('in_distribution', 'uniform_inputs')
SUITE_DESCRIPTIONS = {
    'in_distribution': 'training prompt distribution',
    'uniform_inputs': 'inputs uniform on {-1, 1}^n, nothing planted',
}
# One colour per learner in every panel.
COLORS = {'model': 'black', 'bayes': 'C0', 'elimination': 'C1', 'gf2_elimination': 'C1',
          'nearest_neighbour': 'C2', 'averaging': 'C3', 'majority_label': 'C4'}


def suite_task(task, suite: str):
  """The task whose prompts a suite holds (a copy without planting for uniform_inputs)."""
  if suite not in SUITES:
    raise ConfigError(f'eval suite {suite!r} is invalid: one of {", ".join(SUITES)}')
  if suite == 'uniform_inputs' and task.planted_fraction:
    task = copy.copy(task)
    task.planted_fraction = 0.0
  return task


@functools.lru_cache(maxsize=16)
def _sampler(task):
  return jax.jit(lambda key: task.sample(key, GENERATION_BLOCK))


def draw_prompts(task, num_prompts: int, seed: int) -> Dict[str, np.ndarray]:
  return draw_in_blocks(_sampler(task), num_prompts, seed)


def accuracy_scores(preds, ys) -> np.ndarray:
  """1 where sign(pred) = y, 0 where not, 1/2 where pred = 0 (numpy twin of
  data.boolean.accuracy_scores)."""
  preds, ys = np.asarray(preds, np.float64), np.asarray(ys, np.float64)
  return np.where(preds == 0, 0.5, (preds * ys > 0).astype(np.float64))


def _finite_list(values) -> list:
  return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(values).ravel()]


def score_predictor(fn: Callable, xs_SxNxD: np.ndarray, ys_SxN: np.ndarray,
                    rows_per_call: int) -> np.ndarray:
  """accuracy_SxN of fn over the prompts, called on chunks of rows_per_call prompts (the last
  chunk padded with its first prompt, so that a jitted fn compiles once)."""
  num_prompts = len(ys_SxN)
  size = min(rows_per_call, num_prompts)
  out = np.zeros(ys_SxN.shape)
  for start in range(0, num_prompts, size):
    rows = np.arange(start, start + size)
    rows = np.where(rows < num_prompts, rows, start)
    keep = min(size, num_prompts - start)
    preds = np.asarray(fn(jnp.asarray(xs_SxNxD[rows]), jnp.asarray(ys_SxN[rows])))
    if preds.shape[0] < keep or preds.shape[1] != ys_SxN.shape[1]:
      raise ValueError(f'a predictor returned preds of shape {preds.shape} for {keep} prompts '
                       f'of length {ys_SxN.shape[1]}')
    out[start:start + keep] = accuracy_scores(preds[:keep], ys_SxN[start:start + keep])
  return out


def run_suite(suite: str, model: ModelFns, task, config, *, num_prompts: int, seed: int,
              batch_size: int) -> dict:
  """Accuracy vs number of in-context examples for the model and every baseline that applies.

  Returns {'suite', 'task', 'function', 'description', 'n_dims', 'n_points', 'num_prompts',
  'num_examples': [0..N-1], 'curves': {name: {'mean', 'lo', 'hi', 'num_prompts'}}}. A baseline
  with `max_prompts` set is scored on the first max_prompts prompts.
  """
  del config
  require(isinstance(num_prompts, int) and num_prompts >= 1, 'eval.num_prompts', num_prompts,
          'an integer >= 1')
  require(isinstance(batch_size, int) and batch_size >= 1, 'eval.batch_size', batch_size,
          'an integer >= 1')
  from analysis.stats import bootstrap_ci
  from baselines.boolean import get_baselines
  prompt_task = suite_task(task, suite)

  def model_predictor(xs_BxNxD, ys_BxN):
    batch = {'xs_BxNxD': xs_BxNxD, 'ys_BxN': ys_BxN,
             'point_mask_BxN': jnp.ones(ys_BxN.shape, jnp.float32)}
    return task.predictions(model.predict(batch))

  predictors = {'model': model_predictor}
  for name, fn in get_baselines(prompt_task).items():
    predictors[name] = fn
  prompts = draw_prompts(prompt_task, num_prompts, seed)
  curves = {}
  for name, fn in predictors.items():
    cap = getattr(fn, 'max_prompts', None)
    used = num_prompts if cap is None else min(num_prompts, cap)
    rows_per_call = batch_size if cap is None else min(batch_size, cap)
    correct_SxN = score_predictor(fn, prompts['xs_BxNxD'][:used], prompts['ys_BxN'][:used],
                                  rows_per_call)
    mean, lo, hi = bootstrap_ci(correct_SxN, num_resamples=1000, seed=0)
    curves[name] = {'mean': _finite_list(mean), 'lo': _finite_list(lo), 'hi': _finite_list(hi),
                    'num_prompts': int(used)}
  return {
      'suite': suite,
      'task': task.name,
      'function': task.function,
      'description': f'{prompt_task.describe()}: {SUITE_DESCRIPTIONS[suite]}',
      'n_dims': int(task.n_dims),
      'n_points': int(task.n_points),
      'num_prompts': int(num_prompts),
      'num_examples': list(range(task.n_points)),
      'curves': curves,
  }


def _array(values) -> np.ndarray:
  return np.array([np.nan if v is None else v for v in values], np.float64)


def plot(result: dict, png_path: str, ax=None) -> None:
  """Accuracy vs in-context examples: model (black) and baselines with shaded 95% intervals."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = None
  if ax is None:
    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
  x = np.asarray(result['num_examples'])
  names = ['model'] + [n for n in result['curves'] if n != 'model']
  for index, name in enumerate(names):
    curve = result['curves'][name]
    mean, lo, hi = _array(curve['mean']), _array(curve['lo']), _array(curve['hi'])
    is_model = name == 'model'
    color = COLORS.get(name, f'C{index + 4}')
    ax.plot(x[:len(mean)], mean, color=color, lw=2.4 if is_model else 1.4, label=name,
            zorder=3 if is_model else 2)
    ax.fill_between(x[:len(mean)], lo, hi, color=color, alpha=0.2, lw=0)
  ax.axhline(0.5, ls='--', color='gray', lw=1)
  ax.set_ylim(0.4, 1.02)
  ax.set_xlabel('number of in-context examples')
  ax.set_ylabel('accuracy')
  ax.set_title(f'{result["function"]}: {result["suite"]} (n={result["n_dims"]}, '
               f'{result["num_prompts"]} prompts)', fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(loc='best', fontsize=7)
  if fig is not None:
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)


def accuracy_table(result: dict, positions: Iterable[int]) -> str:
  """Markdown table: a row per number of in-context examples, 'mean [lo, hi]' per curve."""
  names = ['model'] + [n for n in result['curves'] if n != 'model']
  lines = ['| in-context examples | ' + ' | '.join(names) + ' |',
           '|---:|' + '---:|' * len(names)]
  for position in positions:
    require(position in result['num_examples'], 'positions', position,
            f'numbers of in-context examples in 0..{result["num_examples"][-1]}')
    cells = []
    for name in names:
      c = result['curves'][name]
      cells.append(f'{c["mean"][position]:.3f} [{c["lo"][position]:.3f}, '
                   f'{c["hi"][position]:.3f}]')
    lines.append(f'| {position} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def summary(result: dict) -> str:
  last = result['num_examples'][-1]
  parts = [f'{name} {c["mean"][last]:.3f}' for name, c in result['curves'].items()]
  return (f'{result["suite"]} ({result["description"]}), accuracy after {last} examples: '
          + ', '.join(parts))


def seed_curves(result: dict) -> Dict[str, Tuple[list, list]]:
  """The model's accuracy curve: what eval.py averages across the seeds of a run."""
  return {'model accuracy': (list(result['num_examples']), result['curves']['model']['mean'])}


def combined_figure(results, png_path: str) -> None:
  """One panel per result (e.g. one per function class), two per row."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  columns = min(len(results), 2)
  rows = math.ceil(len(results) / columns)
  fig = Figure(figsize=(5.2 * columns, 3.8 * rows))
  FigureCanvasAgg(fig)
  for index, result in enumerate(results):
    plot(result, '', ax=fig.add_subplot(rows, columns, index + 1))
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)


def main(argv=None) -> None:
  """python -m analysis.boolean_eval --results A.json,B.json --out FIG.png [--positions ...]:
  the accuracy table of each result and one figure with a panel per result."""
  import argparse
  import json
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument('--results', required=True, help='comma-separated eval JSON files')
  parser.add_argument('--out', required=True, help='PNG path of the combined figure')
  parser.add_argument('--positions', default='0,5,10,20,39',
                      help='numbers of in-context examples in the tables')
  args = parser.parse_args(argv)
  results = []
  for path in args.results.split(','):
    with open(path) as f:
      results.append(json.load(f))
  positions = [int(p) for p in args.positions.split(',')]
  for result in results:
    step = result.get('checkpoint_step', '?')
    print(f'\n{result["description"]} (step {step}, {result["num_prompts"]} prompts)\n')
    print(accuracy_table(result, positions))
  combined_figure(results, args.out)
  print(f'\nwrote {args.out}')


if __name__ == '__main__':
  main()
