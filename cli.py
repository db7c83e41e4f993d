"""Shared command-line plumbing: one-line errors for bad flags and config values."""
from __future__ import annotations

import math
import os
import sys


def fail(message: str, code: int = 2):
  """Prints `error: <message>` on one line to stderr and exits."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def load_config_flag(config_flag):
  """Reads the --config flag; unknown keys, wrong types or a bad variant become one line."""
  from core import ConfigError
  try:
    config = config_flag.value
    if config is not None:
      config.keys()   # a config file that failed to load raises (OSError) on first access
  except (ConfigError, KeyError, AttributeError, TypeError, ValueError, OSError) as e:
    fail(_one_line(e))
  if config is None:
    fail('--config is required, e.g. --config configs/linear_regression.py:tiny')
  return config


def config_file_problem(spec: str):
  """One line naming what is wrong with the file of a `FILE.py[:variant]` spec, or None."""
  path = spec.partition(':')[0]
  if not path:
    return '--config is empty: give a config file, e.g. --config configs/linear_regression.py:tiny'
  if not os.path.exists(path):
    return f'config file {path!r} does not exist'
  if not os.path.isfile(path):
    return f'config file {path!r} is not a file'
  if not os.access(path, os.R_OK):
    return f'config file {path!r} is not readable'
  return None


def validate_eval_config(config):
  """Raises ConfigError for evaluation settings a run uses during or after training (suites,
  baselines, generation), so that a bad one stops `train.py` / `sweep.py` before anything is
  trained."""
  from analysis.evaluators import get_evaluator, resolve_suites
  from analysis.train_suites import check_train_suites
  from core import ConfigError, require
  from data import TASKS
  e = config.eval
  evaluator = get_evaluator(TASKS.metadata(config.task.name)['eval_family'])
  try:
    resolve_suites(evaluator, e.get('suite', '') or '')
  except ConfigError as error:   # worded for --suite: name the config key instead
    raise ConfigError(str(error).replace('--suite=', 'config.eval.suite=', 1)) from None
  check_train_suites(config)
  if 'baselines' in e:
    from baselines.regression import validate_baselines_config
    validate_baselines_config(config)
  number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
  integer = lambda v: isinstance(v, int) and not isinstance(v, bool)
  if 'temperature' in e:
    require(number(e.temperature) and e.temperature >= 0, 'eval.temperature', e.temperature,
            'must be a finite number >= 0 (0: greedy)')
  if 'ngram_delta' in e:
    require(number(e.ngram_delta) and e.ngram_delta >= 0, 'eval.ngram_delta', e.ngram_delta,
            'must be a finite number >= 0')
  for key in ('top_k', 'num_prefix_strings', 'num_generated_strings'):
    if key in e:
      require(integer(e[key]) and e[key] >= 0, f'eval.{key}', e[key], 'must be an integer >= 0')


def _one_line(error) -> str:
  text = str(error).strip().splitlines()
  return text[0] if text else type(error).__name__


def quiet_logs():
  """Keeps library INFO chatter (orbax, XLA backends) out of the user's terminal."""
  from absl import logging
  logging.set_verbosity(logging.ERROR)


def setup_jax(config):
  """Multi-host initialisation must happen before JAX touches a device.

  With `train.distributed`, calls `jax.distributed.initialize()`. JAX itself reads
  JAX_COORDINATOR_ADDRESS (and cluster managers: SLURM, Open MPI, Kubernetes, Cloud TPU)
  but not the number of processes or this process's index; those come from
  JAX_NUM_PROCESSES and JAX_PROCESS_ID when set, e.g. for two processes on one machine:

    JAX_COORDINATOR_ADDRESS=127.0.0.1:12345 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \
        python train.py ... --config.train.distributed=True     # and JAX_PROCESS_ID=1

  When all three are given, cluster auto-detection is skipped. CPU processes exchange
  collectives over Gloo (TCP), JAX's default CPU implementation.
  """
  quiet_logs()
  import os
  if os.environ.get('ICL_KEEP_FREED_MEMORY') == '1':   # see README, Speed: before JAX starts
    from training.perf import keep_freed_memory
    keep_freed_memory()
  import jax
  if not config.train.get('distributed', False):
    return
  import os
  kwargs = {}
  address = os.environ.get('JAX_COORDINATOR_ADDRESS', '').strip()
  if address:
    if ':' not in address:
      fail(f'JAX_COORDINATOR_ADDRESS={address!r} must be host:port, e.g. 10.0.0.1:12345')
    kwargs['coordinator_address'] = address
  for name, key in (('JAX_NUM_PROCESSES', 'num_processes'), ('JAX_PROCESS_ID', 'process_id')):
    text = os.environ.get(name, '').strip()
    if not text:
      continue
    try:
      kwargs[key] = int(text)
    except ValueError:
      fail(f'{name}={text!r} must be an integer')
  if 'num_processes' in kwargs and kwargs['num_processes'] < 1:
    fail(f'JAX_NUM_PROCESSES={kwargs["num_processes"]} must be >= 1')
  if 'process_id' in kwargs and 'num_processes' in kwargs and not (
      0 <= kwargs['process_id'] < kwargs['num_processes']):
    fail(f'JAX_PROCESS_ID={kwargs["process_id"]} must be in [0, JAX_NUM_PROCESSES='
         f'{kwargs["num_processes"]})')
  if len(kwargs) == 3:      # fully specified: do not probe SLURM / Kubernetes / TPU metadata
    kwargs['cluster_detection_method'] = 'deactivate'
  try:
    jax.distributed.initialize(**kwargs)
  except (ValueError, TypeError, RuntimeError) as e:
    fail(f'jax.distributed.initialize failed: {_one_line(e)} (set JAX_COORDINATOR_ADDRESS, '
         f'JAX_NUM_PROCESSES and JAX_PROCESS_ID, or run under a cluster manager JAX detects)')


def _load_config_file(spec: str):
  import importlib.util
  from core import ConfigError
  problem = config_file_problem(spec)
  if problem:
    raise ConfigError(problem)
  path, _, variant = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_icl_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f'config file {path!r} failed to load: {type(e).__name__}: '
                      f'{_one_line(e)}') from None
  if not hasattr(module, 'get_config'):
    raise ConfigError(f'config file {path!r} defines no get_config()')
  return module.get_config(variant or None)


def _config_spec(argv):
  """The value of --config (or --config=...) in argv, or None."""
  spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if spec is None:
    idx = next((i for i, a in enumerate(argv) if a == '--config'), None)
    spec = argv[idx + 1] if idx is not None and idx + 1 < len(argv) else None
  return spec


def _explain_override_error(argv) -> str | None:
  """Names the first --config.a.b=... override whose key does not exist, with its siblings."""
  spec = _config_spec(argv)
  if spec is None:
    return None
  config = _load_config_file(spec)
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    path = arg[len('--config.'):].split('=', 1)[0].split('.')
    node = config
    for depth, key in enumerate(path):
      if not hasattr(node, 'keys') or key not in node:
        parent = '.'.join(path[:depth]) or '<top>'
        known = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else '(not a section)'
        return (f'config key {".".join(path)!r} is unknown: keys under {parent} are {known}')
      node = node[key]
    value = arg.split('=', 1)[1] if '=' in arg else None
    if value is not None and not _converts(value, node):
      kind = ('True or False' if isinstance(node, bool) else
              'an integer' if isinstance(node, int) else
              'a number' if isinstance(node, float) else f'a {type(node).__name__}')
      return (f'config.{".".join(path)}={value!r} is invalid: must be {kind} (default '
              f'{node!r})')
  return None


def _converts(text: str, default) -> bool:
  """Whether absl / ml_collections can parse `text` as a value of `default`'s type."""
  if isinstance(default, bool):
    return text.lower() in ('true', 'false', 't', 'f', '1', '0')
  for kind in (int, float):
    if isinstance(default, kind):
      try:
        kind(text)
      except ValueError:
        return False
  return True


def parse_flags(argv):
  """absl flags parser that turns any flag or config error into one line."""
  from absl import flags
  if 'config' in flags.FLAGS:   # a missing config file: one line, before absl reads it
    spec = _config_spec(argv[1:])
    problem = config_file_problem(spec) if spec is not None else None
    if problem:
      fail(problem)
  try:
    return flags.FLAGS(argv)
  except Exception as error:  # pylint: disable=broad-except
    message = None
    try:
      message = _explain_override_error(argv[1:])
    except Exception as inner:  # the config file itself is broken: report that
      message = _one_line(inner)
    fail(message or _one_line(error))
