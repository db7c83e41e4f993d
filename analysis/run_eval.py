"""What `eval.py` does with a restored run: every seed against the baselines, and every
checkpoint on fixed prompts (step x position)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

import numpy as np


def write_json_atomic(path: str, obj) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def evaluate_seed(run: Dict[str, Any], seed_index: int, evaluator, suite: str, *,
                  num_prompts: int, seed: int) -> dict:
  """One seed's result of `suite` (the evaluator's JSON)."""
  from analysis.base import make_model_fns
  from runlib.restored import seed_model
  setup = run['setup']
  task = setup.task.bind({k: v[seed_index] for k, v in setup.task_values().items()})
  model = seed_model(run, seed_index)
  result = evaluator.run_suite(suite, make_model_fns(model, task), task, run['config'],
                               num_prompts=num_prompts, seed=seed,
                               batch_size=run['config'].eval.batch_size)
  result['checkpoint_step'] = run['step']
  result['train_seed'] = setup.seeds[seed_index]
  _add_reference(result, run, seed_index, evaluator, suite, task, num_prompts, seed)
  return result


REFERENCE_ROW = 'reference'


def _add_reference(result, run, seed_index, evaluator, suite, task, num_prompts, seed):
  """A run fine-tuned from another (preference, SFT) is evaluated beside its frozen
  reference on the same prompts: the reference's rows join the model's and the baselines'
  (`metrics` / `curves` under REFERENCE_ROW, and `reference_generation`), so the JSON and the
  plot show what fine-tuning kept or lost of in-context learning."""
  from analysis.base import make_model_fns
  from runlib.reference import reference_model
  reference = reference_model(run, seed_index)
  if reference is None:
    return
  other = evaluator.run_suite(suite, make_model_fns(reference, task), task, run['config'],
                              num_prompts=num_prompts, seed=seed,
                              batch_size=run['config'].eval.batch_size)
  for container in ('metrics', 'curves'):
    if 'model' in other.get(container, {}):
      result[container][REFERENCE_ROW] = other[container]['model']
  if 'generation' in other:
    result['reference_generation'] = other['generation']


def suite_over_seeds(run: Dict[str, Any], evaluator, suite: str, out_dir: str, *,
                     num_prompts: int, seed: int, log=print) -> dict:
  """Evaluates every seed; writes <suite>.json/png (and per-seed files when N > 1)."""
  from analysis.plots import across_seeds, plot_seed_curves
  setup = run['setup']
  path = os.path.join(out_dir, f'{suite}.json')
  if setup.num_seeds == 1:
    result = evaluate_seed(run, 0, evaluator, suite, num_prompts=num_prompts, seed=seed)
    write_json_atomic(path, result)
    evaluator.plot(result, os.path.join(out_dir, f'{suite}.png'))
    log(f'{suite}: wrote {path} and {suite}.png')
    if hasattr(evaluator, 'summary'):
      log(evaluator.summary(result))
    return result
  seed_dir = os.path.join(out_dir, suite)
  os.makedirs(seed_dir, exist_ok=True)
  per_seed = []
  for i in range(setup.num_seeds):
    result = evaluate_seed(run, i, evaluator, suite, num_prompts=num_prompts, seed=seed)
    write_json_atomic(os.path.join(seed_dir, f'seed_{i}.json'), result)
    evaluator.plot(result, os.path.join(seed_dir, f'seed_{i}.png'))
    per_seed.append(result)
  summary = {}
  for name in evaluator.seed_curves(per_seed[0]):
    x = evaluator.seed_curves(per_seed[0])[name][0]
    summary[name] = {'x': x, 'seeds': setup.seeds,
                     **across_seeds([evaluator.seed_curves(r)[name][1] for r in per_seed])}
  combined = {'suite': suite, 'checkpoint_step': run['step'], 'seeds': setup.seeds,
              'num_prompts': num_prompts, 'across_seeds': summary,
              'per_seed_files': [f'{suite}/seed_{i}.json' for i in range(setup.num_seeds)]}
  write_json_atomic(path, combined)
  plot_seed_curves(summary, f'{suite}: {setup.num_seeds} seeds (step {run["step"]})',
                   os.path.join(out_dir, f'{suite}.png'))
  log(f'{suite}: wrote {path}, {suite}.png and {setup.num_seeds} per-seed results in {seed_dir}')
  for name, entry in summary.items():
    last = [c[-1] for c in entry['per_seed']]
    mean, lo, hi = entry['mean'][-1], entry['lo'][-1], entry['hi'][-1]
    fmt = lambda v: 'n/a' if v is None else f'{v:.3f}'
    log(f'  {name} at the last position: mean {fmt(mean)} [{fmt(lo)}, {fmt(hi)}] over seeds; '
        f'per seed {", ".join(fmt(v) for v in last)}')
  return combined


def all_checkpoints(run: Dict[str, Any], out_dir: str, *, num_prompts: Optional[int],
                    seed: Optional[int], log=print) -> dict:
  """Per-position metrics of every kept checkpoint on the same prompts, as heatmaps."""
  import jax
  from tqdm import tqdm
  from analysis.plots import plot_checkpoint_heatmaps
  from runlib.positions import icl_score, make_eval_fn
  from runlib.restored import load_checkpoint_params
  setup, config = run['setup'], run['config']
  num_prompts = num_prompts or config.eval.train_prompts
  seed = config.eval.seed if seed is None else seed
  eval_fn = make_eval_fn(setup, run['graphdef'], num_prompts, seed)
  steps, curves = [], {}
  for step in tqdm(run['steps'], desc='checkpoints', leave=False):
    params = run['params'] if step == run['step'] else load_checkpoint_params(run, step, log)
    if params is None:
      continue
    result = {k: np.asarray(v) for k, v in jax.device_get(eval_fn(params, run['rest'])).items()}
    steps.append(step)
    for name, curve_NxP in result.items():
      if curve_NxP.ndim == 2:
        curves.setdefault(name, []).append(curve_NxP)
  metric = setup.task.icl_metric
  output = {'task': setup.task.name, 'steps': steps, 'seeds': setup.seeds,
            'num_prompts': num_prompts, 'eval_seed': seed,
            # name -> [step][seed][position]; null where a position has no target
            'curves': {k: np.where(np.isfinite(np.asarray(v)), np.asarray(v), None).tolist()
                       for k, v in curves.items()},
            'icl_score': ([icl_score(c).tolist() for c in curves[metric]]
                          if metric in curves else None)}
  path = os.path.join(out_dir, 'all_checkpoints.json')
  write_json_atomic(path, output)
  plot_checkpoint_heatmaps(output, os.path.join(out_dir, 'all_checkpoints.png'))
  log(f'all checkpoints: {len(steps)} steps ({", ".join(map(str, steps))}); wrote {path} and '
      f'all_checkpoints.png')
  return output
