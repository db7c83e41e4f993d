"""Evaluator registry: a task's `eval_family` -> the module that evaluates it.

Each module exposes SUITES, run_suite(suite, model_fns, task, config, *, num_prompts, seed,
batch_size) -> dict, plot(result, png_path), and seed_curves(result) -> {label: (x, y)}: the
headline curves that `eval.py` averages across the seeds of a vmapped run.
"""
import importlib

from core import ConfigError, Registry

EVALUATORS = Registry('evaluator', 'task eval_family')
EVALUATORS.register('regression')('analysis.regression_eval')
EVALUATORS.register('regbench')('analysis.regbench_eval')
EVALUATORS.register('classification')('analysis.classification_eval')
EVALUATORS.register('boolean')('analysis.boolean_eval')
EVALUATORS.register('logistic')('analysis.logistic_eval')
EVALUATORS.register('piecewise')('analysis.piecewise_eval')


def get_evaluator(family: str):
  return importlib.import_module(EVALUATORS.get(family))


def resolve_suites(module, suite: str):
  """'' -> the default (first) suite; 'all' -> every suite; else one checked name."""
  if not suite:
    return [module.SUITES[0]]
  if suite == 'all':
    return list(module.SUITES)
  names = [s.strip() for s in suite.split(',') if s.strip()]
  if not names:
    raise ConfigError(f'--suite={suite!r} is invalid: allowed {", ".join(module.SUITES)}, all')
  for name in names:
    if name not in module.SUITES:
      raise ConfigError(f'--suite={name!r} is invalid: allowed {", ".join(module.SUITES)}, all')
  return names
