"""Task registry: `config.task.name` -> task class (see data/base.py for the interface)."""
import importlib

from data.base import TASKS, ConfigError, ModelIO, Task, register_task  # noqa: F401

# Each module registers the tasks it defines.
for _module in ('data.regression', 'data.regbench', 'data.classification', 'data.recall',
                'data.meta_classification', 'data.boolean', 'data.logistic', 'data.piecewise',
                'data.mixture_regression', 'data.paired_regression'):
  importlib.import_module(_module)


def get_task(task_config) -> Task:
  """Builds the task named by `task_config.name`; an unknown name lists the known ones."""
  name = task_config.get('name', None)
  if name not in TASKS:
    raise ConfigError(f'config.task.name={name!r} is invalid: known tasks are '
                      f'{", ".join(sorted(TASKS))}')
  return TASKS[name](task_config)
