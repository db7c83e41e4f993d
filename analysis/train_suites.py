"""Full evaluation suites during training (`eval.train_suites`): the hook the training loop is
handed from above, since training/ does not import analysis/.

  train(config, workdir, hooks=training_hooks(config))     # what train.py, sweeps and studies do

At the scheduled evaluation steps every seed is evaluated on each suite (model against the
baselines, as `eval.py` does): eval/<suite>/step_<n>[_seed_<i>].json, and a metrics row per step
with the model's last-position value of each headline curve.
"""
from __future__ import annotations

import os
from typing import Dict, List

import numpy as np

from runlib.hooks import Hook, HookContext, seed_values

CONFIG_KEY = 'eval.train_suites'


def check_train_suites(config) -> List[str]:
  """The suites `eval.train_suites` names (comma-separated; '' for none), each checked against
  the task's evaluator: ConfigError('config.eval.train_suites=... is invalid: ...') otherwise."""
  from analysis.evaluators import get_evaluator
  from core import require
  from data import TASKS
  text = str(config.eval.train_suites).strip()
  if not text:
    return []
  suites = get_evaluator(TASKS.metadata(config.task.name)['eval_family']).SUITES
  names = [s.strip() for s in text.split(',') if s.strip()]
  for name in names:
    require(name in suites, CONFIG_KEY, text, f'suites of this task: {", ".join(suites)}')
  return names


def training_hooks(config) -> list:
  """The hook factories analysis adds to a run of `config` (`training.loop.train(hooks=...)`);
  raises ConfigError for an unknown suite, before anything is trained."""
  return [SuitesHook(check_train_suites(config))]


class SuitesHook:
  """Builds the ScheduledSuites hook of a run once it is set up; `serves` tells the loop that
  the run's `eval.train_suites` is taken care of."""
  serves = CONFIG_KEY

  def __init__(self, suites: List[str]):
    self.suites = list(suites)

  def __call__(self, context: HookContext) -> 'ScheduledSuites':
    steps = [s for s in context.eval_steps if s > context.start_step]
    return ScheduledSuites(context, steps, self.suites)


class ScheduledSuites(Hook):
  """The suites at `steps`, run on the host for every seed. Slower than the compiled scheduled
  evaluation (baselines are recomputed each time): meant for the few steps where a study needs
  the full comparison."""

  def __init__(self, context: HookContext, steps, suites: List[str]):
    self.context, self.steps, self.suites = context, set(steps), list(suites)

  def stops(self):
    return set(self.steps) if self.suites else set()

  def after_call(self, loop, step):
    if not self.suites or step not in self.steps or not self.context.enabled:
      return
    from analysis.evaluators import get_evaluator
    loop.drain()
    setup = self.context.setup
    evaluator = get_evaluator(setup.task.eval_family)
    run = {'setup': setup, 'graphdef': self.context.graphdef, 'config': setup.config,
           'step': step, 'params': loop.state['params'], 'rest': loop.rest,
           'workdir': self.context.workdir}
    row = {'step': step, 'kind': 'eval'}
    for suite in self.suites:
      heads = self._evaluate(run, evaluator, suite, step)
      for label, values in heads.items():
        row[f'eval/{suite}/{label.replace(" ", "_")}_last'] = seed_values(np.asarray(values))
    self.context.writer.write(row)

  def _evaluate(self, run, evaluator, suite: str, step: int) -> Dict[str, list]:
    """Writes every seed's result of `suite`; returns label -> each seed's last finite value
    of that headline curve."""
    from analysis.run_eval import evaluate_seed, write_json_atomic
    setup = run['setup']
    directory = os.path.join(self.context.workdir, 'eval', suite)
    os.makedirs(directory, exist_ok=True)
    heads: Dict[str, list] = {}
    for i in range(setup.num_seeds):
      result = evaluate_seed(run, i, evaluator, suite,
                             num_prompts=setup.config.eval.train_prompts,
                             seed=setup.config.eval.seed)
      name = f'step_{step}.json' if setup.num_seeds == 1 else f'step_{step}_seed_{i}.json'
      write_json_atomic(os.path.join(directory, name), result)
      for label, (_, curve) in evaluator.seed_curves(result).items():
        finite = [v for v in curve if v is not None]
        heads.setdefault(label, []).append(finite[-1] if finite else float('nan'))
    return heads
