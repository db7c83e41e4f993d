"""The hooks the host loop builds itself: metrics, progress, checkpoints, scheduled evals.

The protocol (`stops`, `at_start`, `on_metrics`, `after_call`, `close`) is runlib/hooks.py's;
hooks from layers above training (the full suites of `eval.train_suites`, analysis/) are
handed to `training.loop.train(..., hooks=[...])` as factories. A new study adds a hook;
`train()` does not grow another branch.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np

from runlib.hooks import Hook, seed_values as _values
from runlib.positions import icl_score


class MetricsWriter:
  """metrics.jsonl (one JSON line per row) and TensorBoard (one run per seed when N > 1)."""

  def __init__(self, workdir: str, num_seeds: int, enabled: bool):
    self.enabled = enabled
    self.num_seeds = num_seeds
    self.file = None
    self.writers: List[Any] = []
    if not enabled:
      return
    self.file = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    from tensorboardX import SummaryWriter
    root = os.path.join(workdir, 'tensorboard')
    if num_seeds == 1:
      self.writers = [SummaryWriter(root)]
    else:
      self.writers = [SummaryWriter(os.path.join(root, f'seed_{i}')) for i in range(num_seeds)]

  def write(self, row: Dict[str, Any]) -> None:
    if not self.enabled:
      return
    self.file.write(json.dumps(row) + '\n')
    step = row['step']
    for key, value in row.items():
      if key in ('step', 'kind', 'seeds'):
        continue
      values = value if isinstance(value, list) else [value] * len(self.writers)
      for writer, v in zip(self.writers, values):
        writer.add_scalar(key, v, step)

  def flush(self) -> None:
    if self.enabled:
      self.file.flush()
      for w in self.writers:
        w.flush()

  def close(self) -> None:
    if self.enabled:
      self.file.close()
      for w in self.writers:
        w.close()


class LogMetrics(Hook):
  """A row every `log_every` steps (and at the last step) with the train metrics and speed."""

  def __init__(self, writer: MetricsWriter, log_every: int, end_step: int, batch_size: int,
               start_step: int):
    self.writer, self.log_every, self.end_step = writer, log_every, end_step
    self.batch_size = batch_size
    self.timer = (time.time(), start_step)
    self.rate = 0.0

  def on_metrics(self, first_step, host):
    count = len(next(iter(host.values())))
    now = time.time()
    self.rate = (first_step + count - self.timer[1]) / max(now - self.timer[0], 1e-9)
    self.timer = (now, first_step + count)
    for i in range(count):
      step = first_step + i + 1
      if step % self.log_every == 0 or step == self.end_step:
        row = {'step': step, **{k: _values(v[i]) for k, v in host.items()},
               'steps_per_sec': self.rate, 'examples_per_sec': self.rate * self.batch_size}
        self.writer.write(row)


class Progress(Hook):
  def __init__(self, start_step: int, end_step: int):
    from tqdm import tqdm
    self.bar = tqdm(total=end_step, initial=start_step, desc='train', unit='step',
                    dynamic_ncols=True)
    self.last = time.time(), start_step

  def on_metrics(self, first_step, host):
    count = len(host['loss'])
    now = time.time()
    rate = (first_step + count - self.last[1]) / max(now - self.last[0], 1e-9)
    self.last = now, first_step + count
    self.bar.update(count)
    self.bar.set_postfix(loss=f'{float(np.mean(host["loss"][-1])):.4f}',
                         steps_per_s=f'{rate:.1f}')

  def close(self, loop):
    self.bar.close()


class Checkpoints(Hook):
  """Saves at every `checkpoint_every` steps, at the log-spaced kept steps and at the end,
  only after the metrics up to that step were read and found finite."""

  def __init__(self, checkpointer, every: int, keep_steps, end_step: int):
    self.checkpointer = checkpointer
    self.steps = set(range(every, end_step + 1, every)) | set(keep_steps) | {end_step}

  def stops(self):
    return set(self.steps)

  def after_call(self, loop, step):
    if step in self.steps:
      loop.drain()                       # never save a state whose loss is not finite
      self.checkpointer.save(step, loop.state)
      loop.writer.flush()


class ScheduledEval(Hook):
  """Per-position metrics on fixed prompts at the scheduled steps, compiled once and dispatched
  like a train call; rows go to metrics.jsonl / TensorBoard ('eval/...') and curves to
  eval/positions/step_<n>.json, with a PNG of the curves through training at the end."""

  SUITE = 'positions'

  def __init__(self, eval_fn, steps, writer: MetricsWriter, workdir: str, seeds,
               num_prompts: int, enabled: bool, icl_metric: Optional[str]):
    self.eval_fn, self.steps = eval_fn, set(steps)
    self.writer, self.seeds, self.num_prompts = writer, list(seeds), num_prompts
    self.enabled = enabled
    self.icl_metric = icl_metric
    self.dir = os.path.join(workdir, 'eval', self.SUITE)
    self.pending: List[Any] = []

  def stops(self):
    return set(self.steps)

  def after_call(self, loop, step):
    self._consume()
    if step in self.steps:
      self.pending.append((step, self.eval_fn(loop.state['params'], loop.rest, loop.frozen)))

  def at_start(self, loop):
    """Step 0 (a run that starts from another run: the 'before' of every comparison)."""
    if 0 in self.steps:
      self.after_call(loop, 0)

  def _consume(self):
    import jax
    while self.pending:
      step, result = self.pending.pop(0)
      host = {k: np.asarray(v) for k, v in jax.device_get(result).items()}
      if not self.enabled:
        continue
      curves = {k: v for k, v in host.items() if v.ndim == 2}
      scalars = {k: v for k, v in host.items() if v.ndim == 1}
      row = {'step': step, 'kind': 'eval'}
      row.update({f'eval/{k}': _values(v) for k, v in scalars.items()})
      for name, curve_NxP in curves.items():
        defined = np.flatnonzero(np.all(np.isfinite(curve_NxP), axis=0))
        if defined.size == 0:
          continue
        row[f'eval/{name}_last'] = _values(curve_NxP[:, defined[-1]])
        row[f'eval/{name}_mean'] = _values(curve_NxP[:, defined].mean(-1))
      if self.icl_metric in curves:
        row['eval/icl_score'] = _values(icl_score(curves[self.icl_metric]))
      self.writer.write(row)
      os.makedirs(self.dir, exist_ok=True)
      payload = {'step': step, 'suite': self.SUITE, 'seeds': self.seeds,
                 'num_prompts': self.num_prompts,
                 'curves': {k: _json_list(v) for k, v in curves.items()},
                 'scalars': {k: v.tolist() for k, v in scalars.items()},
                 'icl_score': (icl_score(curves[self.icl_metric]).tolist()
                               if self.icl_metric in curves else None)}
      write_json_atomic(os.path.join(self.dir, f'step_{step}.json'), payload)

  def close(self, loop):
    self._consume()
    if self.enabled and os.path.isdir(self.dir):
      from runlib.positions_plot import plot_position_curves_through_training
      plot_position_curves_through_training(self.dir, os.path.join(self.dir, 'curves.png'))


def _json_list(array) -> list:
  """Nested lists with NaN (undefined positions) as null: strict JSON."""
  array = np.asarray(array, np.float64)
  return np.where(np.isfinite(array), array, None).tolist()


def write_json_atomic(path: str, obj) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f)
  os.replace(tmp, path)
