r"""Akyürek et al. (2022), "What learning algorithm is in-context learning? Investigations with
linear models": which textbook learner does a trained in-context learner behave like, as depth,
width and label noise vary, and can a linear probe read the weight vector from its layers?

  python -m studies.akyurek --out runs/repro/akyurek

Trains a grid of transformers on noisy in-context linear regression (d = 8, 16 (x, y) pairs,
y = w.x + N(0, s^2), w ~ N(0, I)): depth x width, each run two vmapped members with label
noise s = 0 and s = 1 (`train.seed_values='task.noise_std=0,1'`). Every run is an ordinary
resumable work directory under OUT, and each member's analysis is cached beside it, so a
second call reuses finished work. For every model, on fresh prompts of its own noise level:

  SPD   squared prediction difference (Akyürek et al., Sec. 4): for i in-context examples,
        mean over prompts of (f_model(x_i) - f_ref(x_i))^2 / d, against
          gd1, gd10  1 step (fixed rate) and 10 steps (rate c / trace of the prefix's mean
                     x x^T) of full-batch gradient descent from w = 0 on the prefix's mean
                     squared loss, the rate (c) tuned as a learner (least squared error) on
                     held-out prompts of the same noise level;
          ridge      (X'X + s^2 I)^{-1} X'y, the posterior mean (the Bayes predictor) for
                     this prior and noise; equal to least squares when s = 0;
          ols        minimum-norm least squares.
  ILWD  implicit linear weight difference: the model's predictions for K fresh queries x'
        after the same i examples are fit by a linear map (least squares, no intercept),
        w_model = argmin_w sum_k (f(x'_k) - w.x'_k)^2, and compared with each reference's
        weight on that prefix, ||w_model - w_ref||^2 / d. A linear predictor's implicit
        weight is its explicit one (tests/test_akyurek.py).
  probes ridge probes (analysis.probes) from each layer's residual stream at the x position
        of example i to w, to the least-squares solution on the prefix, to the moment
        X'y = sum_{j<i} y_j x_j, and to the label y_i (a positive control); held-out R^2.

Writes OUT/akyurek.{json,md} and OUT/akyurek.png (SPD heat-maps by depth x width x noise,
SPD against the number of examples, probe R^2 by layer).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from studies import runner

DEPTHS = (1, 2, 4)
WIDTHS = (16, 64)
NOISE_STDS = (0.0, 1.0)
NUM_STEPS = 3000
# Reference GD: gd1 one step at a fixed rate; gd10 ten steps at rate c / trace(A) per prefix
# (a fixed rate for ten steps must stay below 2 / |x_0|^2 ~ 1/4 to survive one example, which
# leaves it far from converged on long prompts; the trace-normalised rate does not).
GD_STEPS = (1, 10)
GD_NORMALIZED = {1: False, 10: True}
LR_GRID = tuple(float(v) for v in np.geomspace(0.01, 8.0, 40))
REFERENCES = ('gd1', 'gd10', 'ridge', 'ols')
CONFIG = 'configs/noisy_linear_regression.py:tiny'
ANALYSIS_VERSION = 3        # bump when the cached per-model analysis changes meaning


# ---- reference learners: explicit weights on every prefix -------------------------------------

def prefix_moments(xs_BxNxD, ys_BxN) -> Tuple[np.ndarray, np.ndarray]:
  """(A_BxNxDxD, b_BxNxD): sums over the examples j < i of x_j x_j^T and y_j x_j (float64)."""
  xs = np.asarray(xs_BxNxD, np.float64)
  ys = np.asarray(ys_BxN, np.float64)
  outer = np.einsum('bnd,bne->bnde', xs, xs)
  moment = ys[..., None] * xs
  a = np.cumsum(outer, axis=1) - outer
  b = np.cumsum(moment, axis=1) - moment
  return a, b


def ridge_weights(xs_BxNxD, ys_BxN, alpha: float) -> np.ndarray:
  """w_BxNxD: (X'X + alpha I)^{-1} X'y on the examples before each position; alpha = 0 is
  minimum-norm least squares (X^+ y)."""
  if alpha < 0:
    raise ValueError(f'alpha={alpha} must be >= 0')
  if alpha == 0:
    from analysis.probes import least_squares_prefix
    return least_squares_prefix(xs_BxNxD, ys_BxN)
  a, b = prefix_moments(xs_BxNxD, ys_BxN)
  eye = np.eye(a.shape[-1])
  return np.linalg.solve(a + alpha * eye, b[..., None])[..., 0]


def gd_weights(xs_BxNxD, ys_BxN, learning_rate: float, num_steps: int,
               normalized: bool = False) -> np.ndarray:
  """w_BxNxD after `num_steps` steps of full-batch gradient descent from w = 0 on
  L(w) = 1/(2i) sum_{j<i} (x_j.w - y_j)^2, i.e. w <- w - rate (A w - b) with A, b the prefix
  means of x x^T and y x. The rate is `learning_rate`, or with `normalized` learning_rate /
  trace(A) per prefix (trace(A) >= the largest Hessian eigenvalue, so rates below 2 never
  diverge; learning_rate = 1 is baselines.regression.gd's default)."""
  a, b = prefix_moments(xs_BxNxD, ys_BxN)
  count = np.arange(a.shape[1], dtype=np.float64)
  scale = np.where(count > 0, 1.0 / np.maximum(count, 1.0), 0.0)[None, :, None]
  a, b = a * scale[..., None], b * scale
  rate = np.full(b.shape[:2] + (1,), float(learning_rate))
  if normalized:
    trace = np.trace(a, axis1=-2, axis2=-1)[..., None]
    rate = np.where(trace > 0, learning_rate / np.where(trace > 0, trace, 1.0), 0.0)
  w = np.zeros_like(b)
  for _ in range(int(num_steps)):
    w = w - rate * (np.einsum('bnde,bne->bnd', a, w) - b)
  return w


def linear_predictions(w_BxNxD, xs_BxNxD) -> np.ndarray:
  """preds_BxN = w_i . x_i."""
  return np.einsum('bnd,bnd->bn', np.asarray(w_BxNxD, np.float64),
                   np.asarray(xs_BxNxD, np.float64))


def tune_gd_learning_rate(xs_BxNxD, ys_BxN, num_steps: int,
                          grid: Sequence[float] = LR_GRID,
                          normalized: bool = False) -> Tuple[float, List[float]]:
  """The rate of the grid whose GD predictor has the least squared error on these prompts,
  averaged over 1..N-1 examples (diverging rates score inf). Returns (rate, errors)."""
  ys = np.asarray(ys_BxN, np.float64)
  errors = []
  with np.errstate(over='ignore', invalid='ignore'):
    for lr in grid:
      preds = linear_predictions(gd_weights(xs_BxNxD, ys, lr, num_steps, normalized),
                                 xs_BxNxD)
      error = float(np.mean(np.square(preds - ys)[:, 1:]))
      errors.append(error if np.isfinite(error) else float('inf'))
  return float(grid[int(np.argmin(errors))]), errors


def reference_weights(xs_BxNxD, ys_BxN, *, noise_std: float,
                      learning_rates: Dict[str, float]) -> Dict[str, np.ndarray]:
  """name -> w_BxNxD for REFERENCES (ridge with the noise-matched alpha = noise_std^2)."""
  out = {f'gd{k}': gd_weights(xs_BxNxD, ys_BxN, learning_rates[f'gd{k}'], k, GD_NORMALIZED[k])
         for k in GD_STEPS}
  out['ridge'] = ridge_weights(xs_BxNxD, ys_BxN, float(noise_std) ** 2)
  out['ols'] = ridge_weights(xs_BxNxD, ys_BxN, 0.0)
  return out


# ---- the two measures ------------------------------------------------------------------------

def implicit_weights(predict: Callable, xs_BxNxD, ys_BxN, queries_KxD) -> np.ndarray:
  """w_BxNxD: for every prompt b and number of examples i, the least-squares linear fit
  (no intercept) of predict's outputs for the K queries put in place of x_i after the
  examples 0..i-1 of the prompt. `predict(xs_RxNxD, ys_RxN) -> preds_RxN` is causal (preds[:, i]
  reads pairs < i and x_i), e.g. a baseline of baselines.regression or a trained model."""
  xs = np.asarray(xs_BxNxD, np.float32)
  ys = np.asarray(ys_BxN, np.float32)
  queries = np.asarray(queries_KxD, np.float64)
  batch, num_points, dims = xs.shape
  num_queries = queries.shape[0]
  if num_queries < dims:
    raise ValueError(f'{num_queries} queries cannot determine a {dims}-dim weight')
  fit_DxK = np.linalg.pinv(queries)         # w = pinv(Q) f for f = Q w exactly
  out = np.zeros((batch, num_points, dims))
  rows_xs = np.repeat(xs, num_queries, axis=0)             # (B*K, N, D): prompt b, query k
  rows_ys = np.repeat(ys, num_queries, axis=0)
  tiled_queries = np.tile(queries.astype(np.float32), (batch, 1))
  for i in range(num_points):
    swapped = rows_xs.copy()
    swapped[:, i] = tiled_queries
    preds_BxK = np.asarray(predict(swapped, rows_ys), np.float64)[:, i].reshape(batch, -1)
    out[:, i] = preds_BxK @ fit_DxK.T
  return out


def spd_curve(preds_a_BxN, preds_b_BxN, normaliser: float) -> np.ndarray:
  """SPD_N: mean over prompts of (a - b)^2 / normaliser at each number of examples."""
  diff = np.asarray(preds_a_BxN, np.float64) - np.asarray(preds_b_BxN, np.float64)
  return np.mean(np.square(diff), axis=0) / normaliser


def ilwd_curve(w_a_BxNxD, w_b_BxNxD) -> np.ndarray:
  """ILWD_N: mean over prompts of ||w_a - w_b||^2 / d at each number of examples."""
  diff = np.asarray(w_a_BxNxD, np.float64) - np.asarray(w_b_BxNxD, np.float64)
  return np.mean(np.sum(np.square(diff), axis=-1), axis=0) / diff.shape[-1]


# ---- a trained model as a predictor ----------------------------------------------------------

def model_predictor(model, task, rows: int = 1024) -> Callable:
  """predict(xs_RxNxD, ys_RxN) -> preds_RxN of a restored model, in padded chunks of `rows`
  (one compilation)."""
  import jax.numpy as jnp
  from analysis.base import make_model_fns
  fns = make_model_fns(model, task)

  def predict(xs_RxNxD, ys_RxN):
    xs, ys = np.asarray(xs_RxNxD, np.float32), np.asarray(ys_RxN, np.float32)
    total = xs.shape[0]
    size = min(rows, total)
    out = []
    for start in range(0, total, size):
      chunk = np.arange(start, start + size)
      chunk = np.where(chunk < total, chunk, start)
      batch = {'xs_BxNxD': jnp.asarray(xs[chunk]), 'ys_BxN': jnp.asarray(ys[chunk]),
               'point_mask_BxN': jnp.ones(ys[chunk].shape, jnp.float32)}
      preds = np.asarray(task.predictions(fns.predict(batch)), np.float64)
      out.append(preds[:min(size, total - start)])
    return np.concatenate(out)

  return predict


def _prompts(task, seed: int, num_prompts: int, step: int):
  import jax
  batch, params = task.sample_with_functions(jax.random.key(seed), num_prompts, step)
  return ({k: np.asarray(v) for k, v in batch.items()},
          {k: np.asarray(v) for k, v in params.items()})


def probe_model(model, task, *, num_prompts: int, seed: int, step: int,
                examples: Sequence[int]) -> Dict[str, Any]:
  """Held-out R^2 of ridge probes from every layer (0: read-in) at the x position of each of
  `examples` to w, the prefix's least-squares weight, the moment X'y and the label y_i."""
  from analysis import probes as probes_lib
  from analysis.diagnostics import hidden_states
  batch, params = _prompts(task, seed, num_prompts, step)
  positions = 2 * np.asarray(examples)        # x_i sits at position 2i
  inputs = np.asarray(task.model_inputs(batch))
  hidden = np.concatenate([hidden_states(model, inputs[s:s + 256])[:, :, positions]
                           for s in range(0, num_prompts, 256)], axis=1)
  targets = probes_lib.regression_probe_targets(batch, params)
  targets['moment'] = prefix_moments(batch['xs_BxNxD'], batch['ys_BxN'])[1]
  out = {}
  for name in ('w', 'least_squares', 'moment', 'y'):
    target = targets[name] if targets[name].ndim == 2 else targets[name][:, list(examples)]
    result = probes_lib.layer_position_probes(hidden, target, positions=range(len(examples)))
    out[name] = result['r2'].tolist()       # [layer][example]
  return {'examples': list(examples), 'r2': out}


def analyse_model(model, task, *, noise_std: float, step: int, num_prompts: int,
                  ilwd_prompts: int, num_queries: int, probe_prompts: int,
                  seed: int = 20221128) -> Dict[str, Any]:
  """SPD and ILWD curves against every reference, the tuned GD rates, and the probes."""
  from analysis.stats import bootstrap_ci
  normaliser = float(task.error_normaliser())
  held_out, _ = _prompts(task, seed + 1, 2048, step)
  learning_rates = {f'gd{k}': tune_gd_learning_rate(
      held_out['xs_BxNxD'], held_out['ys_BxN'], k, normalized=GD_NORMALIZED[k])[0]
      for k in GD_STEPS}
  batch, _ = _prompts(task, seed, num_prompts, step)
  xs, ys = batch['xs_BxNxD'], batch['ys_BxN']
  predict = model_predictor(model, task)
  model_preds = predict(xs, ys)
  weights = reference_weights(xs, ys, noise_std=noise_std, learning_rates=learning_rates)
  result: Dict[str, Any] = {
      'noise_std': float(noise_std), 'learning_rates': learning_rates,
      'num_prompts': num_prompts, 'ilwd_prompts': ilwd_prompts, 'num_queries': num_queries,
      'error': {}, 'spd': {}, 'spd_lo': {}, 'spd_hi': {}, 'ilwd': {}}
  err_mean, _, _ = bootstrap_ci(np.square(model_preds - ys) / normaliser, num_resamples=200)
  result['error']['model'] = err_mean.tolist()
  for name, w in weights.items():
    ref_preds = linear_predictions(w, xs)
    result['error'][name] = (np.mean(np.square(ref_preds - ys), 0) / normaliser).tolist()
    gap = np.square(model_preds - ref_preds) / normaliser
    mean, lo, hi = bootstrap_ci(gap, num_resamples=1000, seed=0)
    result['spd'][name], result['spd_lo'][name], result['spd_hi'][name] = (
        mean.tolist(), lo.tolist(), hi.tolist())
  rng = np.random.default_rng(seed + 2)
  queries = rng.standard_normal((num_queries, xs.shape[-1]))
  w_model = implicit_weights(predict, xs[:ilwd_prompts], ys[:ilwd_prompts], queries)
  for name, w in weights.items():
    result['ilwd'][name] = ilwd_curve(w_model, w[:ilwd_prompts]).tolist()
  result['probes'] = probe_model(model, task, num_prompts=probe_prompts, seed=seed + 3,
                                 step=step, examples=_probe_examples(xs.shape[1], xs.shape[2]))
  return result


def _probe_examples(num_points: int, dims: int) -> List[int]:
  return sorted({1, 2, dims // 2, dims, num_points - 1})


# ---- the grid --------------------------------------------------------------------------------

def run_name(depth: int, width: int) -> str:
  return f'L{depth}_W{width}'


def grid_config(depth: int, width: int, steps: int = NUM_STEPS,
                noise_stds: Sequence[float] = NOISE_STDS):
  from studies.sweeps import member_config
  noise = ','.join(f'{s:g}' for s in noise_stds)
  return member_config({'config': CONFIG, 'overrides': {
      'model.num_layers': depth, 'model.d_model': width, 'model.num_heads': 2,
      'train.num_steps': steps, 'train.num_seeds': len(noise_stds),
      'train.seed_values': f'task.noise_std={noise}', 'train.progress': False,
      'train.checkpoint_every': 1000, 'eval.num_log_evals': 4}}, {'name': 'akyurek'})


def _settings(args) -> Dict[str, Any]:
  return {'version': ANALYSIS_VERSION, 'num_prompts': args.num_prompts,
          'ilwd_prompts': args.ilwd_prompts, 'num_queries': args.num_queries,
          'probe_prompts': args.probe_prompts, 'lr_grid': list(LR_GRID)}


def run_member_analyses(workdir: str, args, log=print) -> List[Dict[str, Any]]:
  """Analyses of every member of a trained run, cached in workdir/akyurek_seed<i>.json."""
  from models.model import param_count
  from training.loop import restore_run, seed_model
  run = restore_run(workdir, log=lambda s: None)
  setup = run['setup']

  def analyse(i):
    task = setup.task.bind({k: v[i] for k, v in setup.task_values().items()})
    model = seed_model(run, i)
    start = time.time()
    result = analyse_model(model, task, noise_std=float(task.noise_std), step=run['step'],
                           num_prompts=args.num_prompts, ilwd_prompts=args.ilwd_prompts,
                           num_queries=args.num_queries, probe_prompts=args.probe_prompts)
    result.update(settings=_settings(args), step=run['step'], param_count=param_count(model),
                  analysis_seconds=round(time.time() - start, 1))
    log(f'{workdir} member {i} (noise {task.noise_std:g}): analysed in '
        f'{result["analysis_seconds"]:.0f}s')
    return result

  current = lambda cached: (cached.get('settings') == _settings(args)
                            and cached.get('step') == run['step'])
  return [runner.cached_json(os.path.join(workdir, f'akyurek_seed{i}.json'),
                             lambda: analyse(i), current) for i in range(setup.num_seeds)]


def _mean(curve: Sequence[float]) -> float:
  """Mean over 1..N-1 examples (every reference predicts 0 at 0)."""
  return float(np.mean(np.asarray(curve, np.float64)[1:]))


def learned_in_context(entry: Dict[str, Any], dims: int, fraction: float = 0.9) -> bool:
  """Whether the model's error is below `fraction` of the zero predictor's, 1 + s^2 / d
  (E y^2 / d for w, x ~ N(0, I)): a model still on the loss plateau matches whichever
  reference predicts least, which says nothing about its algorithm."""
  return _mean(entry['error']['model']) < fraction * (1.0 + entry['noise_std'] ** 2 / dims)


def closest(entry: Dict[str, Any], measure: str) -> str:
  """The reference with the least mean SPD / ILWD; ridge and ols coincide at noise 0."""
  names = [n for n in REFERENCES if not (n == 'ridge' and entry['noise_std'] == 0)]
  best = min(names, key=lambda n: _mean(entry[measure][n]))
  return 'ols (= ridge)' if best == 'ols' and entry['noise_std'] == 0 else best


def tables(rows: List[Dict[str, Any]], num_points: int, dims: int) -> str:
  fmt = lambda v: f'{v:.3f}' if v >= 0.0095 else f'{v:.1e}'
  label = lambda e, m: (closest(e, m) if learned_in_context(e, dims)
                        else f'({closest(e, m)}; no ICL yet)')
  lines = [f'SPD and ILWD: mean over 1..{num_points - 1} in-context examples, / d = {dims}; '
           'model error: squared error / d over the same range (the zero predictor scores '
           '1 + s^2 / d). Noise s = 0: ridge = ols. "no ICL yet": model error above 0.9 x the '
           'zero predictor\'s (still on the loss plateau).', '',
           '| noise s | layers | width | params | model error | SPD gd1 | SPD gd10 | SPD ridge | '
           'SPD ols | closest (SPD) | ILWD gd1 | ILWD gd10 | ILWD ridge | ILWD ols | '
           'closest (ILWD) |',
           '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|']
  for r in rows:
    e = r['result']
    lines.append(
        f'| {e["noise_std"]:g} | {r["depth"]} | {r["width"]} | {e["param_count"]:,} | '
        f'{_mean(e["error"]["model"]):.3f} | '
        + ' | '.join(fmt(_mean(e['spd'][n])) for n in REFERENCES)
        + f' | {label(e, "spd")} | '
        + ' | '.join(fmt(_mean(e['ilwd'][n])) for n in REFERENCES)
        + f' | {label(e, "ilwd")} |')
  lines += ['', 'Reference errors (squared error / d, mean over 1..N-1 examples) and tuned GD '
            'rates:', '', '| noise s | gd1 (rate) | gd10 (rate) | ridge | ols |',
            '|---:|---|---|---:|---:|']
  seen = set()
  for r in rows:
    e = r['result']
    if e['noise_std'] in seen:
      continue
    seen.add(e['noise_std'])
    lr = e['learning_rates']
    lines.append(f'| {e["noise_std"]:g} | {_mean(e["error"]["gd1"]):.3f} ({lr["gd1"]:.3g}) | '
                 f'{_mean(e["error"]["gd10"]):.3f} ({lr["gd10"]:.3g}) | '
                 f'{_mean(e["error"]["ridge"]):.3f} | {_mean(e["error"]["ols"]):.3f} |')
  ex = rows[0]['result']['probes']['examples']
  last = len(ex) - 1
  lines += ['', f'Probes: held-out R^2 at the x position of example {ex[last]} (after '
            f'{ex[last]} examples), at the best layer (which) and at the last layer:', '',
            '| noise s | layers | width | w | least squares | moment X\'y | y (control) |',
            '|---:|---:|---:|---|---|---|---|']
  for r in rows:
    p = r['result']['probes']['r2']
    cells = []
    for name in ('w', 'least_squares', 'moment', 'y'):
      col = np.asarray(p[name], np.float64)[:, last]
      best = int(np.nanargmax(col))
      cells.append(f'{col[best]:.2f} (L{best}) / {col[-1]:.2f}')
    lines.append(f'| {r["result"]["noise_std"]:g} | {r["depth"]} | {r["width"]} | '
                 + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def plot(rows: List[Dict[str, Any]], png_path: str, depths, widths, noise_stds) -> None:
  plt = runner.pyplot()
  num_noise = len(noise_stds)
  fig, axes = plt.subplots(2, num_noise + 1, figsize=(5.2 * (num_noise + 1), 9))
  labels = [f'L{d} W{w}' for w in widths for d in depths]
  index = {(r['depth'], r['width'], r['result']['noise_std']): r for r in rows}
  for col, noise in enumerate(noise_stds):
    ax = axes[0, col]
    table = np.full((len(labels), len(REFERENCES)), np.nan)
    for row, (w, d) in enumerate((w, d) for w in widths for d in depths):
      r = index.get((d, w, float(noise)))
      if r is not None:
        table[row] = [_mean(r['result']['spd'][n]) for n in REFERENCES]
    image = ax.imshow(np.log10(table), cmap='viridis_r', aspect='auto')
    for (i, j), v in np.ndenumerate(table):
      if np.isfinite(v):
        ax.text(j, i, f'{v:.2g}', ha='center', va='center', fontsize=8,
                color='white' if np.log10(v) > np.nanmean(np.log10(table)) else 'black')
    ax.set_xticks(range(len(REFERENCES)), REFERENCES)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_title(f'mean SPD / d, label noise s = {noise:g}')
    fig.colorbar(image, ax=ax, label='log10 SPD')
    # SPD against the number of examples: every depth at the largest width, to the Bayes
    # predictor (ols at s = 0, ridge otherwise; solid) and to ten steps of GD (dashed).
    ax = axes[1, col]
    bayes = 'ols' if noise == 0 else 'ridge'
    for k, d in enumerate(depths):
      r = index.get((d, max(widths), float(noise)))
      if r is None:
        continue
      for name, style in ((bayes, '-'), ('gd10', '--')):
        curve = np.asarray(r['result']['spd'][name])
        ax.plot(np.arange(1, len(curve)), curve[1:], style, color=f'C{k}',
                label=f'L{d} W{max(widths)} vs {name}')
    ax.set_yscale('log')
    ax.set_xlabel('number of in-context examples')
    ax.set_ylabel('SPD / d')
    ax.set_title(f'SPD by number of examples, s = {noise:g}')
    ax.legend(fontsize=7)
  # Probe R^2 by layer after the last example: every depth at the largest width, both noises.
  for k, name in enumerate(('w', 'moment')):
    ax = axes[k, num_noise]
    for j, d in enumerate(depths):
      for noise, style in zip(noise_stds, ('o-', 's--', '^:', 'v-.')):
        r = index.get((d, max(widths), float(noise)))
        if r is None:
          continue
        r2 = np.asarray(r['result']['probes']['r2'][name], np.float64)[:, -1]
        ax.plot(np.arange(len(r2)), r2, style, color=f'C{j}',
                label=f'L{d} W{max(widths)}, s = {noise:g}')
    ex = rows[0]['result']['probes']['examples'][-1]
    ax.set_xlabel('layer (0: read-in)')
    ax.set_ylabel('held-out probe R²')
    ax.set_ylim(-0.1, 1.05)
    target = 'w' if name == 'w' else "X'y"
    ax.set_title(f'linear probe for {target} after {ex} examples')
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)
  plt.close(fig)


def reproduce(args, log=print) -> Dict[str, Any]:
  rows = []
  timings = {}
  # Widest first: when time is short, the models that can leave the plateau come first.
  for width in sorted(args.widths, reverse=True):
    for depth in args.depths:
      workdir = os.path.join(args.out, run_name(depth, width))
      trained = runner.train_run(grid_config(depth, width, args.steps, args.noise), workdir,
                                 log=lambda s: None)
      start = time.time()
      members = run_member_analyses(workdir, args, log)
      timings[run_name(depth, width)] = {'train_s': round(trained, 1),
                                         'analysis_s': round(time.time() - start, 1)}
      log(f'{workdir}: train/resume {trained:.0f}s, analysis {time.time() - start:.0f}s')
      rows += [{'depth': depth, 'width': width, 'workdir': workdir, 'result': m}
               for m in members]
  rows.sort(key=lambda r: (r['result']['noise_std'], r['width'], r['depth']))
  config = grid_config(args.depths[0], args.widths[0], args.steps, args.noise)
  dims, num_points = int(config.task.n_dims), int(config.task.n_points)
  table = tables(rows, num_points, dims)
  result = {'reproduction': 'akyurek2022', 'steps': args.steps, 'depths': list(args.depths),
            'widths': list(args.widths), 'noise_stds': list(args.noise), 'n_dims': dims,
            'n_points': num_points, 'timings': timings, 'settings': _settings(args),
            'rows': rows}
  runner.write_results(args.out, 'akyurek', result, table, table_in_json=False, log=log,
                       plot=lambda path: plot(rows, path, list(args.depths), list(args.widths),
                                              list(args.noise)))
  return result


def _int_list(text: str) -> List[int]:
  return [int(v) for v in text.split(',') if v.strip()]


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m studies.akyurek',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', required=True, help='directory (runs and results inside)')
  parser.add_argument('--depths', type=_int_list, default=list(DEPTHS))
  parser.add_argument('--widths', type=_int_list, default=list(WIDTHS))
  parser.add_argument('--noise', type=lambda t: [float(v) for v in t.split(',')],
                      default=list(NOISE_STDS), help='label noise std of the members')
  parser.add_argument('--steps', type=int, default=NUM_STEPS)
  parser.add_argument('--num_prompts', type=int, default=1024, help='prompts for SPD')
  parser.add_argument('--ilwd_prompts', type=int, default=64, help='prompts for ILWD')
  parser.add_argument('--num_queries', type=int, default=16, help='queries per ILWD fit')
  parser.add_argument('--probe_prompts', type=int, default=1024, help='half train, half test')
  args = parser.parse_args(argv)
  for name in ('steps', 'num_prompts', 'ilwd_prompts', 'probe_prompts'):
    if getattr(args, name) < 4:
      parser.error(f'--{name}={getattr(args, name)} is invalid: must be an integer >= 4')
  if not args.depths or min(args.depths) < 1 or not args.widths or min(args.widths) < 2:
    parser.error('--depths and --widths must be comma lists of integers >= 1 (widths >= 2)')
  if any(s < 0 for s in args.noise):
    parser.error(f'--noise={args.noise} is invalid: standard deviations must be >= 0')
  return args


def main(argv=None) -> int:
  from cli import fail, quiet_logs
  from core import ConfigError
  from training.workdir import WorkdirError
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.num_queries < 8:
    fail(f'--num_queries={args.num_queries} is invalid: must be >= d = 8')
  quiet_logs()
  try:
    reproduce(args)
  except (ConfigError, WorkdirError) as e:
    fail(str(e))
  return 0


if __name__ == '__main__':
  sys.exit(main())
