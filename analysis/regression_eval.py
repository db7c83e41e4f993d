"""Error curves of a trained model against baselines on in-context regression (Garg et al. 2022).

For every number i of in-context examples, the error of the prediction of y_i from x_i and
the pairs before it, averaged over fresh prompts, normalised as Garg does (by d, by the
sparsity for sparse regression, by 1 for decision trees, so that predicting 0 scores about 1
in distribution), with a 95% bootstrap interval.

Suites (data.regression.OOD_SUITES) are the training distribution and Garg's
out-of-distribution prompts. In QUERY_SUITES the query for i examples is not the x_i that
longer prompts hold in context, so each (prompt, i) becomes its own sequence, as in Garg's
eval: pairs < i, then the query at position i (later positions are ignored by causality).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from analysis.base import GENERATION_BLOCK, ModelFns, draw_in_blocks
from core import ConfigError, require
from data.regression import OOD_OPTIONS, OOD_SUITES, QUERY_SUITES

SUITES: Tuple[str, ...] = OOD_SUITES
# Predictors whose distance to the model is reported (Raventós et al.: the model moves from the
# pool's posterior mean, dMMSE, to ridge under the Gaussian prior as the pool grows; for a
# mixture of classes, the mixture's Bayes predictor and each class's own, Panwar et al. 2024).
DISTANCE_TO = ('dmmse', 'ridge', 'least_squares', 'bayes', 'bayes_dense', 'bayes_sparse')
SUITE_DESCRIPTIONS = {
    'in_distribution': 'training prompt distribution',
    'skewed_covariance': 'x ~ N(0, S), eigenvalues of S ∝ 1/i^2, trace d',
    'scaled_x': f'x scaled by {OOD_OPTIONS["x_factor"]}',
    'scaled_y': f'y scaled by {OOD_OPTIONS["y_factor"]}',
    'noisy_labels': f'labels + N(0, {OOD_OPTIONS["label_noise_std"]}^2)',
    'half_subspace': 'x in a random d/2-dim subspace',
    'orthant': 'in-context x in one orthant, query x unrestricted',
    'opposite_orthant': 'in-context x in one orthant, query x in the opposite one',
    'orthogonal': 'query x orthogonal to all in-context x',
    'overlapping': 'query x repeats an in-context x',
    'new_tasks': 'functions fresh from the prior, never from the finite pool',
}


def _draw_prompts(task, suite: str, num_prompts: int, seed: int) -> Dict[str, np.ndarray]:
  """num_prompts prompts of `suite` as numpy arrays with leading axis S."""
  return draw_in_blocks(lambda key: task.sample_ood(key, GENERATION_BLOCK, suite), num_prompts,
                        seed)


def _row_chunks(prompts: Dict[str, np.ndarray], suite: str, num_positions: int,
                num_prompts: int, rows_per_call: int, pad: bool
                ) -> Iterator[Tuple[np.ndarray, np.ndarray, int, np.ndarray,
                                    Optional[np.ndarray], Optional[np.ndarray]]]:
  """Yields (xs_RxNxD, ys_RxN, num_real, prompt_R, position_R, target_R) per call.

  Rows cover the first `num_prompts` prompts. For plain suites a row is a prompt and all its
  positions are scored (position_R is None); for QUERY_SUITES a row is a (prompt, position)
  pair with the query substituted at that position. With `pad`, every chunk has exactly
  min(rows_per_call, total rows) rows (the last one repeats a real row), so that a jitted
  predictor compiles once.
  """
  xs_SxNxD, ys_SxN = prompts['xs_BxNxD'], prompts['ys_BxN']
  query = suite in QUERY_SUITES
  total = num_prompts * num_positions if query else num_prompts
  rows_per_call = min(rows_per_call, total)
  for start in range(0, total, rows_per_call):
    num_real = int(min(rows_per_call, total - start))
    rows_R = np.arange(start, start + (rows_per_call if pad else num_real))
    rows_R = np.where(rows_R < total, rows_R, start)
    if not query:
      yield xs_SxNxD[rows_R], ys_SxN[rows_R], num_real, rows_R, None, None
      continue
    prompt_R, position_R = rows_R // num_positions, rows_R % num_positions
    xs_RxNxD = xs_SxNxD[prompt_R].copy()
    ys_RxN = ys_SxN[prompt_R].copy()
    arange_R = np.arange(len(rows_R))
    xs_RxNxD[arange_R, position_R] = prompts['query_xs_BxNxD'][prompt_R, position_R]
    target_R = prompts['query_ys_BxN'][prompt_R, position_R]
    ys_RxN[arange_R, position_R] = target_R
    yield xs_RxNxD, ys_RxN, num_real, prompt_R, position_R, target_R


def _finite_list(values) -> list:
  return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(values).ravel()]


def run_suite(suite: str, model: ModelFns, task, config, *, num_prompts: int, seed: int,
              batch_size: int) -> dict:
  """Normalised squared error vs number of in-context examples, model and baselines.

  Returns {'suite', 'task', 'n_dims', 'n_points', 'num_prompts', 'normaliser',
  'num_examples': [0..P-1], 'curves': {name: {'mean', 'lo', 'hi', 'num_prompts'}},
  'description'}. The model's curve is 'model'; the others come from
  baselines.regression.get_baselines(task.name, config). A baseline with `max_prompts` set
  is scored on the first max_prompts prompts only (in QUERY_SUITES, where each prompt costs
  P calls, on the first ceil(max_prompts / P)). Non-finite numbers become None (strict JSON).
  """
  if suite not in SUITES:
    raise ConfigError(f'eval suite {suite!r} is invalid: one of {", ".join(SUITES)}')
  require(isinstance(num_prompts, int) and num_prompts >= 1, 'eval.num_prompts', num_prompts,
          'an integer >= 1')
  require(isinstance(batch_size, int) and batch_size >= 1, 'eval.batch_size', batch_size,
          'an integer >= 1')
  # Imported here so that the evaluator module loads even before these pieces exist.
  from analysis.stats import bootstrap_ci
  from baselines.regression import get_baselines

  def model_predictor(xs_BxNxD, ys_BxN):
    batch = {'xs_BxNxD': xs_BxNxD, 'ys_BxN': ys_BxN,
             'point_mask_BxN': jnp.ones(ys_BxN.shape, jnp.float32)}
    return task.predictions(model.predict(batch))

  predictors: Dict[str, Callable] = {'model': model_predictor}
  for name, fn in get_baselines(task.name, config).items():
    if name == 'model':
      raise ValueError("a baseline may not be called 'model'")
    predictors[name] = fn

  num_positions = task.ood_positions(suite)
  query = suite in QUERY_SUITES
  prompts = _draw_prompts(task, suite, num_prompts, seed)
  plans = {}  # name -> (prompts scored, rows per call, pad)
  for name, fn in predictors.items():
    cap = getattr(fn, 'max_prompts', None)
    used, rows_per_call = num_prompts, batch_size
    if cap is not None:
      used = min(num_prompts, math.ceil(cap / num_positions) if query else cap)
      rows_per_call = min(batch_size, cap)  # fn scores only the first `cap` rows it is given
    plans[name] = (used, rows_per_call, getattr(fn, 'jittable', True))
  def num_calls(used, rows_per_call):
    rows = used * num_positions if query else used
    return math.ceil(rows / min(rows_per_call, rows))

  total_calls = sum(num_calls(used, rows) for used, rows, _ in plans.values())

  normaliser = float(task.error_normaliser())
  curves = {}
  kept_preds = {}   # name -> preds_SxP, for the model's distance to the Bayes predictors
  with tqdm(total=total_calls, desc=f'{task.name}/{suite}', disable=total_calls < 8,
            leave=False) as progress:
    for name, fn in predictors.items():
      used, rows_per_call, pad = plans[name]
      squared_SxP = np.full((used, num_positions), np.nan)
      for xs, ys, num_real, prompt_R, position_R, target_R in _row_chunks(
          prompts, suite, num_positions, used, rows_per_call, pad):
        preds_RxN = np.asarray(fn(jnp.asarray(xs), jnp.asarray(ys)), np.float64)
        if preds_RxN.shape[0] < num_real or preds_RxN.shape[1] != xs.shape[1]:
          raise ValueError(f'predictor {name!r} returned preds of shape {preds_RxN.shape} '
                           f'for {num_real} real rows of length {xs.shape[1]}')
        if position_R is None:
          err = (preds_RxN[:num_real, :num_positions] - ys[:num_real, :num_positions]) ** 2
          squared_SxP[prompt_R[:num_real]] = err
          if name == 'model' or name in DISTANCE_TO:
            kept = kept_preds.setdefault(name, np.full((used, num_positions), np.nan))
            kept[prompt_R[:num_real]] = preds_RxN[:num_real, :num_positions]
        else:
          chosen_R = preds_RxN[np.arange(num_real), position_R[:num_real]]
          err = (chosen_R - target_R[:num_real]) ** 2
          squared_SxP[prompt_R[:num_real], position_R[:num_real]] = err
        progress.update(1)
      mean, lo, hi = bootstrap_ci(squared_SxP / normaliser, num_resamples=1000, seed=0)
      curves[name] = {'mean': _finite_list(mean), 'lo': _finite_list(lo),
                      'hi': _finite_list(hi), 'num_prompts': int(used)}
  distances = {}
  for name in DISTANCE_TO:
    if name in kept_preds and 'model' in kept_preds:
      rows = min(len(kept_preds[name]), len(kept_preds['model']))
      gap_SxP = (kept_preds['model'][:rows] - kept_preds[name][:rows]) ** 2 / normaliser
      mean, lo, hi = bootstrap_ci(gap_SxP, num_resamples=1000, seed=0)
      distances[name] = {'mean': _finite_list(mean), 'lo': _finite_list(lo),
                         'hi': _finite_list(hi)}
  return {
      'distances': distances,   # squared distance of the model's predictions to each / norm.
      'suite': suite,
      'task': task.name,
      'n_dims': int(task.n_dims),
      'n_points': int(task.n_points),
      'num_prompts': int(num_prompts),
      'normaliser': normaliser,
      'num_examples': list(range(num_positions)),
      'curves': curves,
      'description': SUITE_DESCRIPTIONS[suite],
  }


def _array(values) -> np.ndarray:
  return np.array([np.nan if v is None else v for v in values], np.float64)


def plot(result: dict, png_path: str, log_y: bool = False) -> None:
  """Error vs in-context examples: model (black) and baselines with shaded 95% intervals.

  Linear y-axis: [0, 1.25 x max(1, every curve's zero-shot error, the model's median error)],
  so an interpolation peak (least squares near i = d) cannot squash the other curves; log_y
  shows the full range instead.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(6.4, 4.2))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  x = np.asarray(result['num_examples'])
  names = ['model'] + sorted(n for n in result['curves'] if n != 'model')
  top, positive, largest = 1.0, [], 0.0
  for index, name in enumerate(names):
    if name not in result['curves']:
      continue
    curve = result['curves'][name]
    mean, lo, hi = _array(curve['mean']), _array(curve['lo']), _array(curve['hi'])
    is_model = name == 'model'
    color = 'black' if is_model else f'C{index - 1}'
    ax.plot(x, mean, color=color, lw=2.4 if is_model else 1.5, label=name,
            zorder=3 if is_model else 2)
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
    finite = mean[np.isfinite(mean)]
    if finite.size:
      top = max(top, float(finite[0]), float(np.median(finite)) if is_model else 0.0)
      largest = max(largest, float(finite.max()))
      positive.extend(finite[finite > 0].tolist())
  ax.axhline(1.0, ls='--', color='gray', lw=1)
  if log_y and positive:
    ax.set_yscale('log')
    ax.set_ylim(max(min(positive) * 0.5, 1e-6), max(largest, top) * 1.5)
  else:
    ax.set_ylim(-0.02 * top, 1.25 * top)
  ax.set_xlim(x.min() - 0.5, x.max() + 0.5)
  ax.set_xlabel('number of in-context examples')
  ax.set_ylabel(f'squared error / {result["normaliser"]:g}')
  ax.set_title(f'{result["task"]}: {result["suite"]} (d={result["n_dims"]}, '
               f'{result["num_prompts"]} prompts)')
  ax.grid(alpha=0.3)
  ax.legend(loc='best', fontsize=8)
  fig.tight_layout()
  fig.savefig(png_path, dpi=120)


def error_table(result: dict, positions: Iterable[int]) -> str:
  """Markdown table: a row per number of in-context examples, 'mean [lo, hi]' per curve."""
  names = ['model'] + sorted(n for n in result['curves'] if n != 'model')
  names = [n for n in names if n in result['curves']]
  available = list(result['num_examples'])
  lines = ['| in-context examples | ' + ' | '.join(names) + ' |',
           '|---:|' + '---:|' * len(names)]

  def cell(curve, j):
    if curve['mean'][j] is None:
      return 'n/a'
    lo = 'n/a' if curve['lo'][j] is None else f'{curve["lo"][j]:.3f}'
    hi = 'n/a' if curve['hi'][j] is None else f'{curve["hi"][j]:.3f}'
    return f'{curve["mean"][j]:.3f} [{lo}, {hi}]'

  for position in positions:
    require(position in available, 'positions', position,
            f'numbers of in-context examples in 0..{available[-1]}')
    j = available.index(position)
    lines.append(f'| {position} | ' +
                 ' | '.join(cell(result['curves'][n], j) for n in names) + ' |')
  return '\n'.join(lines)


def seed_curves(result: dict) -> Dict[str, Tuple[list, list]]:
  """The model's error curve: what eval.py averages across the seeds of a run."""
  return {'model error': (list(result['num_examples']), result['curves']['model']['mean'])}
