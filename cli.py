"""Shared command-line plumbing: one-line errors for bad flags and config values."""
from __future__ import annotations

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
  except (ConfigError, KeyError, AttributeError, TypeError, ValueError) as e:
    fail(_one_line(e))
  if config is None:
    fail('--config is required, e.g. --config configs/linear_regression.py:tiny')
  return config


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
  path, _, variant = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_icl_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant or None)


def _explain_override_error(argv) -> str | None:
  """Names the first --config.a.b=... override whose key does not exist, with its siblings."""
  spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if spec is None:
    idx = next((i for i, a in enumerate(argv) if a == '--config'), None)
    spec = argv[idx + 1] if idx is not None and idx + 1 < len(argv) else None
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
  return None


def parse_flags(argv):
  """absl flags parser that turns any flag or config error into one line."""
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except Exception as error:  # pylint: disable=broad-except
    message = None
    try:
      message = _explain_override_error(argv[1:])
    except Exception as inner:  # the config file itself is broken: report that
      message = _one_line(inner)
    fail(message or _one_line(error))
