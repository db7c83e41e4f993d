"""Builds (or finds) the frozen REGBENCH test set as a TFDS array_record dataset.

  python -m data.build_regbench [--config configs/regbench.py:tiny] [--data_dir DIR]
                                [--task.KEY=VALUE ...]

e.g. `python -m data.build_regbench --data_dir /tmp/tfds --task.num_test_dfas=100`. Task keys
default to data/regbench.py DEFAULTS; the data dir defaults to task.test_data_dir, else
$TFDS_DATA_DIR, else ~/tensorflow_datasets. Prints the dataset directory and a summary.
Building the default set (500 prompts of 512 tokens) takes a few seconds on a CPU.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from typing import Dict, List, Optional

from data import regbench
from data.base import ConfigError


def _parse_overrides(extra: List[str]) -> Dict[str, object]:
  overrides = {}
  for arg in extra:
    if not arg.startswith('--task.') or '=' not in arg:
      raise ConfigError(f'argument {arg!r} is invalid: expected --task.KEY=VALUE or --data_dir')
    key, value = arg[len('--task.'):].split('=', 1)
    try:
      overrides[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[key] = value  # a plain string such as a path
  return overrides


class _Parser(argparse.ArgumentParser):
  """argparse whose errors are one line (`error: ...`) instead of usage plus a message."""

  def error(self, message):
    from cli import fail
    fail(f'{message} (usage: python -m data.build_regbench [--config FILE[:variant]] '
         f'[--data_dir DIR] [--task.KEY=VALUE ...])')


def _check_data_dir(path: str) -> None:
  """A data dir that is, or can be created as, a directory (nothing is written here)."""
  path = os.path.abspath(path)
  if os.path.exists(path):
    if not os.path.isdir(path):
      raise ConfigError(f'--data_dir={path} exists and is not a directory')
    return
  parent = os.path.dirname(path)
  while not os.path.exists(parent) and os.path.dirname(parent) != parent:
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ConfigError(f'--data_dir={path} cannot be created: {parent} is not a directory')
  if not os.access(parent, os.W_OK | os.X_OK):
    raise ConfigError(f'--data_dir={path} cannot be created: {parent} is not writable')


def main(argv: Optional[List[str]] = None) -> int:
  from cli import fail, quiet_logs
  quiet_logs()   # TFDS's INFO / WARNING chatter stays out of the terminal (errors are one line)
  try:
    return _main(argv)
  except ConfigError as e:
    fail(str(e))
  except OSError as e:   # e.g. a data dir that became unwritable or a full disk
    fail(f'building the REGBENCH test set failed at {e.filename}: {e.strerror or e}')


def _main(argv: Optional[List[str]] = None) -> int:
  parser = _Parser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data_dir', default='', help='TFDS data dir')
  parser.add_argument('--config', default='', help='a train config file[:variant] whose task '
                      'section to use (then --task.KEY=VALUE override it)')
  args, extra = parser.parse_known_args(argv)
  base = {}
  if args.config:
    from cli import _load_config_file
    task = _load_config_file(args.config).task
    if task.get('name') != 'regbench':
      raise ConfigError(f'--config {args.config} is a {task.get("name")!r} config; the REGBENCH '
                        f'test set needs a regbench one, e.g. configs/regbench.py:tiny')
    base = dict(task)
    base.pop('name', None)
  cfg = regbench.merge_config({**base, **_parse_overrides(extra)})
  data_dir = args.data_dir or cfg['test_data_dir'] or os.environ.get(
      'TFDS_DATA_DIR', os.path.expanduser('~/tensorflow_datasets'))
  _check_data_dir(data_dir)
  from data import regbench_tfds  # TFDS import is slow; only here
  builder = regbench_tfds.build(cfg, data_dir)
  arrays = regbench_tfds.read_split(builder.as_data_source()['test'])
  tokens = arrays['tokens_BxT']
  print(f'{builder.data_dir}: {tokens.shape[0]} prompts x {tokens.shape[1]} tokens, '
        f'{int(arrays["loss_mask_BxT"].sum())} targets, '
        f'mean automaton size {arrays["num_states_B"].mean():.2f} states')
  return 0


if __name__ == '__main__':
  sys.exit(main())
