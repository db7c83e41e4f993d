"""Evaluator registry: a task's `eval_family` -> the module that evaluates it.

Each module exposes SUITES, run_suite(suite, model_fns, task, config, *, num_prompts, seed,
batch_size) -> dict, and plot(result, png_path).
"""
import importlib

from data.base import ConfigError

EVALUATORS = {
    'regression': 'analysis.regression_eval',
    'regbench': 'analysis.regbench_eval',
}


def get_evaluator(family: str):
  if family not in EVALUATORS:
    raise ConfigError(f'eval family {family!r} is invalid: known {", ".join(EVALUATORS)}')
  return importlib.import_module(EVALUATORS[family])


def resolve_suites(module, suite: str):
  """'' -> the default (first) suite; 'all' -> every suite; else one checked name."""
  if not suite:
    return [module.SUITES[0]]
  if suite == 'all':
    return list(module.SUITES)
  names = [s.strip() for s in suite.split(',') if s.strip()]
  for name in names:
    if name not in module.SUITES:
      raise ConfigError(f'--suite={name!r} is invalid: allowed {", ".join(module.SUITES)}, all')
  return names
