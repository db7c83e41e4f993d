"""Evaluation of in-context classification and token recall (eval family 'classification').

Tasks: bursty_classification (data/classification.py; Chan et al. 2022, Reddy 2023) and the
recall tasks associative_recall, mqar, induction_copy (data/recall.py).

Suites (a task evaluates the splits it declares in `task.eval_splits`; any other suite returns
a result marked 'skipped' with the reason, so `--suite all` works for every task):
  in_distribution      the training distribution
  in_context           classification: bursty prompts of novel (held-out) classes with random
                       labels: solvable only from the context
  in_context_permuted  classification: bursty prompts of training classes, labels permuted per
                       prompt: solvable only from the context
  in_weights           classification: no exemplar of the query's class in the context:
                       solvable only from the weights. Recall: the answer is not in the context
                       (a control whose accuracy should be chance)

For the model and each reference predictor of the task (`task.baseline_scores`: classification
context_nn / class_label / chance; recall context_lookup / chance) the result holds accuracy
(and, for the model, cross-entropy loss) over every query of every prompt, per query index
(the query of a classification prompt; each query of MQAR; each token of the second copy), and
for classification per number of exemplars of the query's class in the context, each with a 95%
percentile-bootstrap interval over prompts (analysis/stats.py).

Task interface used: eval_splits, sample_split(key, batch_size, split) (jittable, batch_size
and split static), num_queries(), query_scores(outputs, batch) -> {'loss_BxQ', 'correct_BxQ'},
baseline_scores(batch) -> {name: accuracy_BxQ}, split_description(split).
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Tuple

import jax
import numpy as np

from analysis.base import GENERATION_BLOCK, ModelFns, draw_in_blocks
from analysis.stats import ci_entry as _ci, scalar_ci_entry as _scalar_ci
from core import ConfigError

SUITES: Tuple[str, ...] = ('in_distribution', 'in_context', 'in_context_permuted',
                           'in_weights')


@functools.lru_cache(maxsize=32)
def _sampler(task, split: str):
  return jax.jit(lambda key: task.sample_split(key, GENERATION_BLOCK, split))


@functools.lru_cache(maxsize=32)
def _scorer(task):
  @jax.jit
  def score(outputs, batch):
    out = {f'model_{k}': v for k, v in task.query_scores(outputs, batch).items()}
    out.update({f'baseline_{k}': v for k, v in task.baseline_scores(batch).items()})
    return out
  return score


def suite_prompts(task, split: str, num_prompts: int, seed: int) -> Dict[str, np.ndarray]:
  """`num_prompts` prompts of `split`, deterministic in `seed` (independent of batch sizes)."""
  return draw_in_blocks(_sampler(task, split), num_prompts, seed)


def _by_group(values_S: np.ndarray, group_S: np.ndarray, num_groups: int,
              seed: int) -> Dict[str, list]:
  """Mean and bootstrap interval of values within each group (None where a group is empty)."""
  out = {'mean': [], 'lo': [], 'hi': [], 'count': []}
  for g in range(num_groups):
    rows = values_S[group_S == g]
    out['count'].append(int(rows.size))
    if rows.size == 0:
      for k in ('mean', 'lo', 'hi'):
        out[k].append(None)
      continue
    entry = _scalar_ci(rows, seed)
    for k in ('mean', 'lo', 'hi'):
      out[k].append(entry[k])
  return out


def run_suite(suite: str, model: ModelFns, task, config, *, num_prompts: int, seed: int,
              batch_size: int) -> Dict[str, Any]:
  """Accuracy and loss of `model` (and accuracy of the task's reference predictors) on
  `suite`, with 95% bootstrap intervals over prompts (JSON-serialisable)."""
  del config
  if suite not in SUITES:
    raise ConfigError(f'suite={suite!r} is invalid: allowed {", ".join(SUITES)}')
  if num_prompts < 1 or batch_size < 1:
    raise ConfigError(f'num_prompts={num_prompts}, batch_size={batch_size} are invalid: '
                      'both must be >= 1')
  result: Dict[str, Any] = dict(suite=suite, task=task.name, num_prompts=int(num_prompts),
                                seed=int(seed))
  splits = tuple(getattr(task, 'eval_splits', ()))
  if suite not in splits:
    result['skipped'] = (f'task {task.name!r} has no {suite} split (its splits: '
                         f'{", ".join(splits)})')
    return result
  result['description'] = task.split_description(suite)
  arrays = suite_prompts(task, suite, num_prompts, seed)
  score = _scorer(task)
  size = min(batch_size, num_prompts)
  parts = []
  for start in range(0, num_prompts, size):
    rows = np.arange(start, start + size)
    rows = np.where(rows < num_prompts, rows, start)       # pad the last chunk; cut below
    batch = {k: v[rows] for k, v in arrays.items()}
    outputs = model.predict(batch)
    scores = jax.device_get(score(outputs, batch))
    keep = min(size, num_prompts - start)
    parts.append({k: np.asarray(v)[:keep] for k, v in scores.items()})
  scores = {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in parts[0]}

  metrics: Dict[str, Dict[str, Any]] = {}
  loss_SxQ, correct_SxQ = scores['model_loss_BxQ'], scores['model_correct_BxQ']
  metrics['model'] = {'accuracy': _scalar_ci(correct_SxQ.mean(1), seed),
                      'loss': _scalar_ci(loss_SxQ.mean(1), seed),
                      'by_query': {'accuracy': _ci(correct_SxQ, seed),
                                   'loss': _ci(loss_SxQ, seed)}}
  for key, values_SxQ in scores.items():
    if key.startswith('baseline_'):
      metrics[key[len('baseline_'):]] = {'accuracy': _scalar_ci(values_SxQ.mean(1), seed),
                                         'by_query': {'accuracy': _ci(values_SxQ, seed)}}
  if 'exemplars_B' in arrays:
    exemplars = arrays['exemplars_B']
    groups = int(task.num_context) + 1
    for name, entry in metrics.items():
      values = scores['model_correct_BxQ' if name == 'model' else f'baseline_{name}'][:, -1]
      entry['by_exemplars'] = {'accuracy': _by_group(values, exemplars, groups, seed)}
    metrics['model']['by_exemplars']['loss'] = _by_group(loss_SxQ[:, -1], exemplars, groups,
                                                         seed)
    result['mean_exemplars'] = float(np.mean(exemplars))
  result['num_queries'] = int(correct_SxQ.shape[1])
  result['metrics'] = metrics
  return result


def summary(result: Dict[str, Any]) -> str:
  if 'skipped' in result:
    return f'{result["suite"]}: skipped ({result["skipped"]})'
  lines = [f'{result["suite"]}: {result["num_prompts"]} prompts ({result["description"]})']
  for name, m in result['metrics'].items():
    acc = m['accuracy']
    line = f'  {name:15s} accuracy {acc["mean"]:.3f} [{acc["lo"]:.3f}, {acc["hi"]:.3f}]'
    if 'loss' in m:
      loss = m['loss']
      line += f'  loss {loss["mean"]:.3f} [{loss["lo"]:.3f}, {loss["hi"]:.3f}]'
    lines.append(line)
  return '\n'.join(lines)


def plot(result: Dict[str, Any], png_path: str) -> None:
  """Accuracy per query index (model vs references) and the model's loss, with intervals;
  for classification, accuracy against the number of exemplars of the query's class."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  if 'skipped' in result:
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis('off')
    ax.text(0.5, 0.5, f'{result["suite"]}: skipped\n{result["skipped"]}', ha='center',
            va='center', fontsize=8, wrap=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return
  metrics = result['metrics']
  has_exemplars = 'by_exemplars' in metrics['model']
  panels = [('by_query', 'accuracy', 'query index', 'accuracy'),
            ('by_query', 'loss', 'query index', 'loss (nats)')]
  if has_exemplars:
    panels.append(('by_exemplars', 'accuracy', 'exemplars of the query class in context',
                   'accuracy'))
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
  for ax, (group, key, xlabel, ylabel) in zip(axes, panels):
    for i, (name, m) in enumerate(metrics.items()):
      entry = m.get(group, {}).get(key)
      if entry is None:
        continue
      xs = [x for x, v in enumerate(entry['mean']) if v is not None]
      if not xs:
        continue
      mean = np.array([entry['mean'][x] for x in xs])
      lo = np.array([entry['lo'][x] for x in xs])
      hi = np.array([entry['hi'][x] for x in xs])
      style = dict(color='black', linewidth=2.2) if name == 'model' else dict(color=f'C{i}')
      ax.errorbar(xs, mean, yerr=[mean - lo, hi - mean], marker='o', markersize=3, capsize=2,
                  label=name, **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  acc = metrics['model']['accuracy']
  fig.suptitle(f'{result["task"]} {result["suite"]}: {result["num_prompts"]} prompts, model '
               f'accuracy {acc["mean"]:.3f} [{acc["lo"]:.3f}, {acc["hi"]:.3f}]')
  fig.tight_layout()
  fig.savefig(png_path, dpi=100)
  plt.close(fig)


def seed_curves(result: Dict[str, Any]) -> Dict[str, Tuple[list, list]]:
  """The model's accuracy and loss per query index: what eval.py averages across seeds."""
  if 'skipped' in result:
    return {'model accuracy': ([0], [None]), 'model loss': ([0], [None])}
  by_query = result['metrics']['model']['by_query']
  x = list(range(len(by_query['accuracy']['mean'])))
  return {'model accuracy': (x, by_query['accuracy']['mean']),
          'model loss': (x, by_query['loss']['mean'])}
