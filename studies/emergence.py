"""Watching in-context learning emerge: the studies of the emergence papers, one command each.

    python -m studies.emergence jump --out runs/emergence/jump            # (1) [--tiny]
    python -m studies.emergence distribution --out runs/emergence/dist    # (2)
    python -m studies.emergence transience --out runs/emergence/trans     # (3)
    python -m studies.emergence task_diversity --out runs/emergence/td    # (4)
    python -m studies.emergence mixers --out runs/emergence/mixers        # (5)
    python -m studies.emergence kirsch --out runs/emergence/kirsch

Every study trains ordinary runs (train.py's loop: resumable, one work directory per run under
OUT; a second call reuses finished runs) and reads what the loop's scheduled evaluation wrote
to their metrics.jsonl: in-context and in-weights accuracy, the ICL score and, for attention
models, the strongest head's induction and previous-token scores, on fixed prompts at every
`eval.every` steps and at log-spaced steps. `task_diversity` also runs the regression
evaluator (distances to the dMMSE and ridge predictors). Each writes OUT/<study>.json, a PNG
beside it and a Markdown table (printed).

  jump            bursty classification, several seeds in one vmapped run: the step where
                  in-context accuracy jumps and the step where the induction score jumps, per
                  seed (Reddy 2023; Olsson et al. 2022)
  distribution    final in-context vs in-weights accuracy over the fraction of bursty prompts
                  and the Zipf exponent of class frequencies (Chan et al. 2022), all members in
                  one vmapped run (both are per-seed task keys)
  transience      a long run whose in-context accuracy rises and then fades, beside the same
                  run with weight forgetting of the embeddings (Singh et al. 2023; Anand et al.,
                  "Dual process learning")
  task_diversity  noisy linear regression from a pool of M tasks, M swept: the model's squared
                  distance to dMMSE (the pool's posterior mean) and to ridge (the Gaussian
                  prior's), on pool tasks and on new tasks (Raventós et al. 2023)
  mixers          the bursty task across the mixer zoo at matched parameter count
  kirsch          the projected-and-permuted classification family with M tasks, M swept:
                  accuracy on training tasks vs new tasks (Kirsch et al. 2022)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from studies import runner

# Devices every run trains on (None: all of them); tests use one.
DEVICES = None
STUDIES = ('jump', 'distribution', 'transience', 'task_diversity', 'mixers', 'kirsch')


# ---- runs -------------------------------------------------------------------------------------

def load_config(spec: str, overrides: Dict[str, Any]):
  from studies.sweeps import member_config
  return member_config({'config': spec, 'overrides': overrides}, {'name': 'study'})


def run(config, workdir: str, log=print) -> List[dict]:
  """Trains (or resumes, or reuses a finished) run; returns its metrics rows."""
  from training.workdir import read_metrics
  log(f'{workdir}: done in {runner.train_run(config, workdir, log, devices=DEVICES):.0f}s')
  return read_metrics(os.path.join(workdir, 'metrics.jsonl'), warn=log)


def eval_rows(rows: Sequence[dict]) -> List[dict]:
  return [r for r in rows if r.get('kind') == 'eval']


def series(rows: Sequence[dict], name: str) -> tuple:
  """(steps, values S x N) of `eval/<name>` over the scheduled evaluations (N seeds)."""
  rows = [r for r in eval_rows(rows) if f'eval/{name}' in r]
  steps = np.array([r['step'] for r in rows])
  values = np.array([np.atleast_1d(r[f'eval/{name}']) for r in rows], np.float64)
  order = np.argsort(steps, kind='stable')
  return steps[order], values[order]


def final(rows: Sequence[dict], name: str, last: int = 3) -> np.ndarray:
  """Per seed: the mean of the last `last` scheduled evaluations of `name`."""
  _, values = series(rows, name)
  return values[-last:].mean(0)


def jump_step(steps: np.ndarray, values: np.ndarray, *, min_rise: float = 0.1) -> Optional[int]:
  """The first step where `values` crosses half-way from its plateau to its peak: peak = the
  highest 3-point running mean, plateau = the median of the values before the peak (so an
  early rise to the plateau, or a later fall, does not count). None when the rise is below
  `min_rise` (no jump)."""
  values = np.asarray(values, np.float64)
  if values.size < 3:
    return None
  smooth = np.convolve(values, np.ones(3) / 3, mode='same')
  smooth[0], smooth[-1] = values[:2].mean(), values[-2:].mean()
  peak_index = int(np.argmax(smooth))
  high = float(smooth[peak_index])
  low = float(np.median(values[:peak_index + 1]))
  if high - low < min_rise:
    return None
  above = np.flatnonzero(smooth[:peak_index + 1] >= low + 0.5 * (high - low))
  return int(steps[above[0]]) if above.size else None


def _fmt(value, digits=3):
  if value is None or (isinstance(value, float) and not np.isfinite(value)):
    return '—'
  return f'{value:.{digits}f}' if isinstance(value, (float, np.floating)) else str(value)


# ---- (1) the jump -------------------------------------------------------------------------------

BURSTY = 'configs/bursty_classification.py:tiny'


def jump(args, log=print) -> Dict[str, Any]:
  steps = args.steps or 5000
  seeds = 1 if args.tiny else args.seeds
  config = load_config(BURSTY, {
      'train.num_steps': steps, 'train.num_seeds': seeds, 'train.progress': False,
      'eval.every': args.eval_every or max(steps // 100, 10)})
  rows = run(config, os.path.join(args.out, 'run'), log)
  steps_s, ic = series(rows, 'in_context_accuracy')
  _, ind = series(rows, 'induction_score')
  _, prev = series(rows, 'previous_token_score')
  _, iw = series(rows, 'in_weights_accuracy')
  per_seed = []
  for i in range(ic.shape[1]):
    per_seed.append({'seed': config.train.seed + i,
                     'ic_jump_step': jump_step(steps_s, ic[:, i]),
                     'induction_jump_step': jump_step(steps_s, ind[:, i]),
                     'previous_token_jump_step': jump_step(steps_s, prev[:, i]),
                     'in_weights_jump_step': jump_step(steps_s, iw[:, i]),
                     'peak_in_context_accuracy': float(ic[:, i].max()),
                     'peak_step': int(steps_s[np.argmax(ic[:, i])]),
                     'final_in_context_accuracy': float(ic[-3:, i].mean()),
                     'final_induction_score': float(ind[-3:, i].mean()),
                     'final_previous_token_score': float(prev[-3:, i].mean()),
                     'final_in_weights_accuracy': float(iw[-3:, i].mean())})
  lines = ['| seed | step of the jump: in-context acc | induction score | previous-token score '
           '| in-weights acc | peak IC acc (step) | final IC acc | final induction | '
           'final IW acc |', '|---|---|---|---|---|---|---|---|---|']
  for s in per_seed:
    lines.append(f'| {s["seed"]} | {_fmt(s["ic_jump_step"])} | {_fmt(s["induction_jump_step"])} '
                 f'| {_fmt(s["previous_token_jump_step"])} | {_fmt(s["in_weights_jump_step"])} '
                 f'| {s["peak_in_context_accuracy"]:.3f} ({s["peak_step"]}) '
                 f'| {_fmt(s["final_in_context_accuracy"])} | {_fmt(s["final_induction_score"])} '
                 f'| {_fmt(s["final_in_weights_accuracy"])} |')
  lines.append('')
  lines.append('jump step: first evaluation half-way from the plateau (median before the peak) '
               'to the peak (highest 3-point running mean); — where the rise is under 0.1')
  result = {'study': 'jump', 'config': BURSTY, 'steps': steps_s.tolist(),
            'in_context_accuracy': ic.T.tolist(), 'induction_score': ind.T.tolist(),
            'previous_token_score': prev.T.tolist(), 'in_weights_accuracy': iw.T.tolist(),
            'per_seed': per_seed}
  plt = runner.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  colours = plt.cm.tab10(np.arange(ic.shape[1]) % 10)
  for i, c in enumerate(colours):
    axes[0].plot(steps_s, ic[:, i], color=c, label=f'seed {per_seed[i]["seed"]}')
    axes[0].plot(steps_s, iw[:, i], color=c, ls=':', alpha=0.7)
    axes[1].plot(steps_s, ind[:, i], color=c)
    axes[1].plot(steps_s, prev[:, i], color=c, ls=':')
    for ax, key in ((axes[0], 'ic_jump_step'), (axes[1], 'induction_jump_step')):
      if per_seed[i][key] is not None:
        ax.axvline(per_seed[i][key], color=c, lw=0.8, ls='--')
  axes[0].set_ylabel('in-context accuracy (solid), in-weights (dotted)')
  axes[1].set_ylabel('induction score (solid), previous-token score (dotted)')
  for ax in axes:
    ax.set_xlabel('step')
  axes[0].legend(fontsize=8)
  fig.suptitle('bursty classification: in-context accuracy and the induction head, per seed')
  fig.tight_layout(rect=(0, 0, 1, 0.94))
  fig.savefig(os.path.join(args.out, 'jump.png'), dpi=120)
  plt.close(fig)
  runner.write_results(args.out, 'jump', result, '\n'.join(lines), log=log)
  return result


# ---- (2) burstiness x Zipf ------------------------------------------------------------------------

def distribution(args, log=print) -> Dict[str, Any]:
  p_bursty = [float(v) for v in args.p_bursty.split(',')]
  zipf = [float(v) for v in args.zipf.split(',')]
  grid = [(p, a) for a in zipf for p in p_bursty]
  steps = args.steps or 3000
  config = load_config(BURSTY, {
      'train.num_steps': steps, 'train.num_seeds': len(grid), 'train.progress': False,
      'task.num_classes': args.num_classes,
      'train.seed_values': ('task.p_bursty=' + ','.join(str(p) for p, _ in grid) +
                            ';task.zipf_alpha=' + ','.join(str(a) for _, a in grid)),
      'eval.every': max(steps // 30, 10)})
  rows = run(config, os.path.join(args.out, 'run'), log)
  ic, iw = final(rows, 'in_context_accuracy'), final(rows, 'in_weights_accuracy')
  steps_s, ic_curves = series(rows, 'in_context_accuracy')
  cells = [{'p_bursty': p, 'zipf_alpha': a, 'in_context_accuracy': float(ic[i]),
            'in_weights_accuracy': float(iw[i]),
            'peak_in_context_accuracy': float(ic_curves[:, i].max()),
            'peak_step': int(steps_s[np.argmax(ic_curves[:, i])])}
           for i, (p, a) in enumerate(grid)]
  lines = ['| Zipf exponent \\ bursty fraction | ' + ' | '.join(str(p) for p in p_bursty) + ' |',
           '|---|' + '---|' * len(p_bursty)]
  for a in zipf:
    row = [c for c in cells if c['zipf_alpha'] == a]
    lines.append(f'| {a} | ' + ' | '.join(
        f'{c["in_context_accuracy"]:.2f} / {c["in_weights_accuracy"]:.2f} '
        f'(peak IC {c["peak_in_context_accuracy"]:.2f} at {c["peak_step"]})' for c in row) + ' |')
  lines.append('')
  lines.append('cells: final in-context accuracy (novel classes) / final in-weights accuracy (no '
               'exemplar in context), means of the last 3 evaluations, and the peak in-context '
               f'accuracy with its step; K = {args.num_classes} classes, {steps} steps')
  result = {'study': 'distribution', 'config': BURSTY, 'num_classes': args.num_classes,
            'steps': steps, 'cells': cells}
  plt = runner.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, key, title in ((axes[0], 'in_context_accuracy', 'in-context accuracy'),
                         (axes[1], 'in_weights_accuracy', 'in-weights accuracy')):
    grid_a = np.array([[c[key] for c in cells if c['zipf_alpha'] == a] for a in zipf])
    image = ax.imshow(grid_a, vmin=0, vmax=1, cmap='viridis', origin='lower', aspect='auto')
    ax.set_xticks(range(len(p_bursty)), [str(p) for p in p_bursty])
    ax.set_yticks(range(len(zipf)), [str(a) for a in zipf])
    ax.set_xlabel('fraction of bursty prompts')
    ax.set_ylabel('Zipf exponent')
    ax.set_title(title)
    for (r, c), v in np.ndenumerate(grid_a):
      ax.text(c, r, f'{v:.2f}', ha='center', va='center', color='w' if v < 0.6 else 'k')
    fig.colorbar(image, ax=ax)
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, 'distribution.png'), dpi=120)
  plt.close(fig)
  runner.write_results(args.out, 'distribution', result, '\n'.join(lines), log=log)
  return result


# ---- (3) transience and weight forgetting ----------------------------------------------------------

def transience(args, log=print) -> Dict[str, Any]:
  steps = args.steps or 20_000
  base = {'train.num_steps': steps, 'train.progress': False, 'train.num_seeds': args.seeds,
          'train.seed': args.seed,
          'task.num_classes': args.num_classes, 'task.zipf_alpha': args.zipf_alpha,
          'task.p_bursty': args.p_bursty,
          'eval.every': max(steps // 60, 10), 'train.checkpoint_every': max(steps // 10, 100)}
  variants = {'plain': {}, 'forgetting': {'train.forget_every': args.forget_every}}
  curves = {}
  for name, extra in variants.items():
    rows = run(load_config(BURSTY, {**base, **extra}), os.path.join(args.out, name), log)
    steps_s, ic = series(rows, 'in_context_accuracy')
    _, iw = series(rows, 'in_weights_accuracy')
    if extra:   # an evaluation right after a re-draw sees fresh embeddings: leave those out
      keep = steps_s % args.forget_every != 0
      steps_s, ic, iw = steps_s[keep], ic[keep], iw[keep]
    peak = ic.max(0)
    curves[name] = {'steps': steps_s.tolist(), 'in_context_accuracy': ic.T.tolist(),
                    'in_weights_accuracy': iw.T.tolist(),
                    'peak_in_context_accuracy': peak.tolist(),
                    'peak_step': [int(steps_s[j]) for j in ic.argmax(0)],
                    'final_in_context_accuracy': ic[-3:].mean(0).tolist(),
                    'final_in_weights_accuracy': iw[-3:].mean(0).tolist()}
  lines = ['| run | seed | peak IC acc (step) | final IC acc | final IW acc |',
           '|---|---|---|---|---|']
  note = (f'final: mean of the last 3 evaluations; the forgetting run leaves out evaluations '
          f'at multiples of {args.forget_every} steps (right after a re-draw)')
  for name, c in curves.items():
    for i in range(len(c['peak_in_context_accuracy'])):
      lines.append(f'| {name} | {args.seed + i} | {c["peak_in_context_accuracy"][i]:.3f} '
                   f'({c["peak_step"][i]}) | {c["final_in_context_accuracy"][i]:.3f} | '
                   f'{c["final_in_weights_accuracy"][i]:.3f} |')
  lines += ['', note]
  result = {'study': 'transience', 'config': BURSTY, 'settings': base,
            'forget_every': args.forget_every, 'runs': curves}
  plt = runner.pyplot()
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for name, style in (('plain', '-'), ('forgetting', '--')):
    c = curves[name]
    for i, ic in enumerate(c['in_context_accuracy']):
      ax.plot(c['steps'], ic, style, color=f'C{i}', label=f'{name}, seed {args.seed + i}: in-context')
      ax.plot(c['steps'], c['in_weights_accuracy'][i], style, color=f'C{i}', alpha=0.35)
  ax.set_xlabel('step')
  ax.set_ylabel('accuracy (faint: in-weights)')
  ax.set_title(f'transience: plain (solid) vs forgetting every {args.forget_every} (dashed)')
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, 'transience.png'), dpi=120)
  plt.close(fig)
  runner.write_results(args.out, 'transience', result, '\n'.join(lines), log=log)
  return result


# ---- (4) task diversity ----------------------------------------------------------------------------

def task_diversity(args, log=print) -> Dict[str, Any]:
  from analysis.evaluators import get_evaluator
  from analysis.run_eval import evaluate_seed
  from training.loop import restore_run
  pools = [int(v) for v in args.pool_sizes.split(',')]
  steps = args.steps or 4000
  evaluator = get_evaluator('regression')
  rows_out = []
  for m in pools:
    config = load_config('configs/noisy_linear_regression.py:tiny', {
        'train.num_steps': steps, 'train.progress': False, 'task.num_tasks': m,
        'train.num_seeds': args.seeds, 'eval.num_log_evals': 4})
    workdir = os.path.join(args.out, f'M{m}')
    run(config, workdir, log)
    restored = restore_run(workdir, log=lambda s: None)
    entry = {'num_tasks': m, 'seeds': []}
    for i in range(restored['setup'].num_seeds):
      seed_entry = {}
      for suite in ('in_distribution', 'new_tasks'):
        result = evaluate_seed(restored, i, evaluator, suite, num_prompts=args.num_prompts,
                               seed=config.eval.seed)
        seed_entry[suite] = {
            'model_error': float(np.mean(result['curves']['model']['mean'][1:])),
            'distance': {k: float(np.mean(v['mean'][1:]))
                         for k, v in result['distances'].items()},
            'error': {k: float(np.mean(result['curves'][k]['mean'][1:]))
                      for k in ('dmmse', 'ridge') if k in result['curves']}}
      entry['seeds'].append(seed_entry)
    rows_out.append(entry)
    log(f'M={m}: ' + '; '.join(
        f'{s}: distance to dMMSE {_fmt(_mean(entry, s, "dmmse"))}, to ridge '
        f'{_fmt(_mean(entry, s, "ridge"))}' for s in ('in_distribution', 'new_tasks')))
  lines = ['| M (tasks) | pool: model error | pool: dist. dMMSE | pool: dist. ridge | '
           'new: model error | new: dist. dMMSE | new: dist. ridge | new: dMMSE error | '
           'new: ridge error |', '|---|---|---|---|---|---|---|---|---|']
  for e in rows_out:
    label = '∞ (fresh)' if e['num_tasks'] == 0 else str(e['num_tasks'])
    lines.append(f'| {label} | {_fmt(_mean(e, "in_distribution", None))} | '
                 f'{_fmt(_mean(e, "in_distribution", "dmmse"))} | '
                 f'{_fmt(_mean(e, "in_distribution", "ridge"))} | '
                 f'{_fmt(_mean(e, "new_tasks", None))} | {_fmt(_mean(e, "new_tasks", "dmmse"))} | '
                 f'{_fmt(_mean(e, "new_tasks", "ridge"))} | '
                 f'{_fmt(_mean(e, "new_tasks", "dmmse", "error"))} | '
                 f'{_fmt(_mean(e, "new_tasks", "ridge", "error"))} |')
  lines.append('')
  lines.append('errors and squared distances are normalised by d and averaged over 1..15 '
               'in-context examples; mean over seeds')
  switch = next((e['num_tasks'] for e in rows_out if e['num_tasks'] > 0
                 and _mean(e, 'new_tasks', 'ridge') is not None
                 and _mean(e, 'new_tasks', 'dmmse') is not None
                 and _mean(e, 'new_tasks', 'ridge') < _mean(e, 'new_tasks', 'dmmse')), None)
  result = {'study': 'task_diversity', 'steps': steps, 'pools': rows_out,
            'switch_num_tasks': switch}
  lines.append(f'smallest M where the model is closer to ridge than to dMMSE on new tasks: '
               f'{switch}')
  plt = runner.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  finite = [e for e in rows_out if e['num_tasks'] > 0]
  xs = [e['num_tasks'] for e in finite]
  for ax, suite in zip(axes, ('in_distribution', 'new_tasks')):
    for name, style in (('dmmse', 'o-'), ('ridge', 's-')):
      ax.plot(xs, [_mean(e, suite, name) for e in finite], style, label=f'to {name}')
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('number of pretraining tasks M')
    ax.set_ylabel('squared distance of predictions / d')
    ax.set_title({'in_distribution': 'prompts from the pool', 'new_tasks': 'new tasks'}[suite])
    ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, 'task_diversity.png'), dpi=120)
  plt.close(fig)
  runner.write_results(args.out, 'task_diversity', result, '\n'.join(lines), log=log)
  return result


def _mean(entry, suite, name, kind='distance'):
  values = []
  for s in entry['seeds']:
    if name is None:
      values.append(s[suite]['model_error'])
    elif name in s[suite][kind]:
      values.append(s[suite][kind][name])
  return float(np.mean(values)) if values else None


# ---- (5) mixers ------------------------------------------------------------------------------------

MIXERS = ('attention', 'linear_attention', 'gla', 'retention', 'rwkv', 'mamba', 's4d', 'hyena',
          'lstm', 'gru')


def mixers(args, log=print) -> Dict[str, Any]:
  from data import get_task
  from models.zoo import match_width, position_for
  steps = args.steps or 3000
  rows_out = []
  for mixer in args.mixers.split(','):
    overrides = {'train.num_steps': steps, 'train.progress': False, 'model.mixer': mixer,
                 'train.num_seeds': args.seeds, 'model.position': position_for(mixer),
                 'eval.every': max(steps // 30, 10)}
    if mixer in ('attention', 'momentum_attention'):   # softmax attention: the config's rope
      overrides['model.position'] = 'rope'
    config = load_config(BURSTY, overrides)
    match_width(config.model, get_task(config.task).io(), args.match_params)
    rows = run(config, os.path.join(args.out, mixer), log)
    steps_s, ic = series(rows, 'in_context_accuracy')
    with open(os.path.join(args.out, mixer, 'model_info.json')) as f:
      params = json.load(f)['param_count']
    rows_out.append({'mixer': mixer, 'd_model': config.model.d_model, 'params': params,
                     'steps': steps_s.tolist(), 'in_context_accuracy': ic.T.tolist(),
                     'final_in_context_accuracy': float(ic[-3:].mean()),
                     'final_in_weights_accuracy': float(final(rows, 'in_weights_accuracy').mean()),
                     'jump_steps': [jump_step(steps_s, ic[:, i]) for i in range(ic.shape[1])]})
  lines = ['| mixer | d_model | params | final IC acc | final IW acc | IC jump step per seed |',
           '|---|---|---|---|---|---|']
  for r in rows_out:
    lines.append(f'| {r["mixer"]} | {r["d_model"]} | {r["params"]:,} | '
                 f'{r["final_in_context_accuracy"]:.3f} | {r["final_in_weights_accuracy"]:.3f} | '
                 + ', '.join(_fmt(s) for s in r['jump_steps']) + ' |')
  result = {'study': 'mixers', 'steps': steps, 'match_params': args.match_params,
            'mixers': rows_out}
  plt = runner.pyplot()
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for i, r in enumerate(rows_out):
    ic = np.asarray(r['in_context_accuracy'])
    ax.plot(r['steps'], ic.mean(0), color=plt.cm.tab10(i % 10), label=r['mixer'])
  ax.set_xlabel('step')
  ax.set_ylabel('in-context accuracy (novel classes), mean over seeds')
  ax.set_title(f'bursty classification across mixers (~{args.match_params:,} parameters)')
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, 'mixers.png'), dpi=120)
  plt.close(fig)
  runner.write_results(args.out, 'mixers', result, '\n'.join(lines), log=log)
  return result


# ---- Kirsch --------------------------------------------------------------------------------------

def kirsch(args, log=print) -> Dict[str, Any]:
  pools = [int(v) for v in args.pool_sizes.split(',')]
  steps = args.steps or 3000
  rows_out = []
  for m in pools:
    config = load_config('configs/meta_classification.py:tiny', {
        'train.num_steps': steps, 'train.progress': False, 'task.num_tasks': m,
        'train.num_seeds': args.seeds, 'eval.every': max(steps // 20, 10)})
    rows = run(config, os.path.join(args.out, f'M{m}'), log)
    seen = final(rows, 'in_distribution_accuracy')
    new = final(rows, 'in_context_accuracy')
    rows_out.append({'num_tasks': m, 'seen_accuracy': seen.tolist(),
                     'new_accuracy': new.tolist()})
  lines = ['| M (tasks) | training tasks: accuracy at the last example | new tasks | phase |',
           '|---|---|---|---|']
  for r in rows_out:
    seen, new = float(np.mean(r['seen_accuracy'])), float(np.mean(r['new_accuracy']))
    phase = ('general learning' if new > 0.8 * seen and new > 0.3 else
             'memorisation / task identification' if seen > 0.3 else 'not learned')
    r['phase'] = phase
    label = '∞ (fresh)' if r['num_tasks'] == 0 else str(r['num_tasks'])
    lines.append(f'| {label} | {seen:.3f} | {new:.3f} | {phase} |')
  result = {'study': 'kirsch', 'steps': steps, 'pools': rows_out}
  plt = runner.pyplot()
  fig, ax = plt.subplots(figsize=(7, 4))
  finite = [r for r in rows_out if r['num_tasks'] > 0]
  xs = [r['num_tasks'] for r in finite]
  ax.plot(xs, [np.mean(r['seen_accuracy']) for r in finite], 'o-', label='training tasks')
  ax.plot(xs, [np.mean(r['new_accuracy']) for r in finite], 's-', label='new tasks')
  ax.set_xscale('log', base=2)
  ax.set_xlabel('number of training tasks M')
  ax.set_ylabel('accuracy at the last example')
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, 'kirsch.png'), dpi=120)
  plt.close(fig)
  runner.write_results(args.out, 'kirsch', result, '\n'.join(lines), log=log)
  return result


# ---- command line ----------------------------------------------------------------------------------

def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m studies.emergence',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('study', choices=STUDIES)
  parser.add_argument('--out', required=True, help='directory of the study (runs inside)')
  parser.add_argument('--steps', type=int, default=0, help='train steps (0: the study default)')
  parser.add_argument('--seeds', type=int, default=0, help='seeds per run (0: study default)')
  parser.add_argument('--tiny', action='store_true', help='jump: one seed (a few minutes)')
  parser.add_argument('--eval_every', type=int, default=0)
  parser.add_argument('--seed', type=int, default=0, help='transience: the first seed')
  parser.add_argument('--num_classes', type=int, default=0)
  parser.add_argument('--p_bursty', default='')
  parser.add_argument('--zipf', default='0,1,2')
  parser.add_argument('--zipf_alpha', type=float, default=0.0, help='transience: Zipf exponent')
  parser.add_argument('--forget_every', type=int, default=1000)
  parser.add_argument('--pool_sizes', default='')
  parser.add_argument('--num_prompts', type=int, default=512)
  parser.add_argument('--mixers', default=','.join(MIXERS))
  parser.add_argument('--match_params', type=int, default=150_000)
  args = parser.parse_args(argv)
  defaults = {
      'jump': dict(seeds=3),
      'distribution': dict(seeds=1, num_classes=1024, p_bursty='0,0.5,0.9,1'),
      'transience': dict(seeds=1, num_classes=4096, p_bursty='0.9'),
      'task_diversity': dict(seeds=1, pool_sizes='1,4,16,64,256,1024,4096,0'),
      'mixers': dict(seeds=2),
      'kirsch': dict(seeds=1, pool_sizes='1,4,16,64,256,1024,0'),
  }[args.study]
  for key, value in defaults.items():
    if not getattr(args, key):
      setattr(args, key, value)
  if args.study == 'transience':
    args.p_bursty = float(args.p_bursty)
  for name in ('steps', 'seeds', 'seed', 'eval_every', 'num_classes', 'forget_every', 'num_prompts',
               'match_params'):
    if getattr(args, name) < 0:
      parser.error(f'--{name}={getattr(args, name)} is invalid: must be >= 0')
  return args


def main(argv=None) -> int:
  from cli import fail, quiet_logs
  from core import ConfigError
  from training.workdir import WorkdirError
  args = parse_args(sys.argv[1:] if argv is None else argv)
  quiet_logs()
  os.makedirs(args.out, exist_ok=True)
  try:
    globals()[args.study](args)
  except (ConfigError, WorkdirError) as e:
    fail(str(e))
  return 0


if __name__ == '__main__':
  sys.exit(main())
