"""Runs many command lines of ONE entry point inside this process, as `python <entry> ...` would.

  python tests/bad_inputs_harness.py CASES.json RESULTS.json

CASES.json: {"entry": "train.py" | "eval.py" | "sweep.py" | "bench.py" | "data.build_regbench",
"root": DIR, "cases": [{"id": ..., "argv": [...]}, ...]}. Each case runs the entry point as
`__main__` (runpy: `app.run(main, ...)` and its flag parser included) with sys.argv set, its
file descriptors 1 and 2 redirected to files, and absl's flags of the previous case removed
(the entry point defines them again). A SystemExit gives the exit code; any other exception is
recorded as a traceback (what the user would have seen). The tree under "root" is snapshot
before and after every case: RESULTS.json lists, per case, the paths that changed.

One process per entry point: train.py and eval.py define flags of the same names, so two entry
points never share a process. Used by tests/test_bad_inputs.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import runpy
import signal
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE_TIMEOUT_S = 30


class CaseTimeout(Exception):
  pass


def _on_alarm(signum, frame):
  raise CaseTimeout(f'case still running after {CASE_TIMEOUT_S}s (was the bad input accepted?)')


def snapshot(root: str) -> dict:
  """path -> (kind, mode, size, sha1) of everything under root (root itself included)."""
  tree = {}
  if not os.path.lexists(root):
    return tree
  for directory, dirs, files in os.walk(root):
    rel = os.path.relpath(directory, root)
    tree[rel] = ('dir', os.stat(directory).st_mode)
    for name in files:
      path = os.path.join(directory, name)
      st = os.lstat(path)
      digest = ''
      if os.path.isfile(path) and os.access(path, os.R_OK):
        with open(path, 'rb') as f:
          digest = hashlib.sha1(f.read()).hexdigest()
      tree[os.path.join(rel, name)] = ('file', st.st_mode, st.st_size, digest)
  return tree


def changes(before: dict, after: dict) -> list:
  return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


class Captured:
  """Redirects file descriptors 1 and 2 (so library output written there is caught too)."""

  def __enter__(self):
    sys.stdout.flush()
    sys.stderr.flush()
    self.files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    self.saved = [os.dup(1), os.dup(2)]
    os.dup2(self.files[0].fileno(), 1)
    os.dup2(self.files[1].fileno(), 2)
    return self

  def __exit__(self, *exc):
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(self.saved[0], 1)
    os.dup2(self.saved[1], 2)
    for fd in self.saved:
      os.close(fd)
    self.out, self.err = [], []
    for f, into in zip(self.files, (self.out, self.err)):
      f.seek(0)
      into.append(f.read().decode('utf-8', 'replace'))
      f.close()
    self.out, self.err = self.out[0], self.err[0]
    return False


def _reset_absl_flags(baseline: set) -> None:
  from absl import flags
  for name in list(flags.FLAGS):
    if name not in baseline:
      delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()


def run_case(entry: str, argv: list, baseline: set) -> dict:
  is_module = not entry.endswith('.py')
  if not is_module:
    _reset_absl_flags(baseline)
  sys.argv = [entry if not is_module else entry.replace('.', '/') + '.py'] + list(argv)
  code, tb = None, None
  start = time.perf_counter()
  with Captured() as captured:
    signal.alarm(CASE_TIMEOUT_S)   # a bad input that is accepted must not train for minutes
    try:
      if is_module:
        runpy.run_module(entry, run_name='__main__', alter_sys=True)
      else:
        runpy.run_path(os.path.join(REPO, entry), run_name='__main__')
      code = 0
    except SystemExit as e:
      if e.code is None:
        code = 0
      elif isinstance(e.code, int):
        code = e.code
      else:                      # sys.exit('message'): Python prints it and exits with 1
        print(e.code, file=sys.stderr)
        code = 1
    except BaseException:        # noqa: BLE001 - an uncaught exception: the user sees this
      tb = traceback.format_exc()
      sys.stderr.write(tb)
      code = 1
    finally:
      signal.alarm(0)
  return dict(code=code, stdout=captured.out, stderr=captured.err, traceback=tb is not None,
              seconds=time.perf_counter() - start)


def main() -> None:
  cases_path, results_path = sys.argv[1:3]
  with open(cases_path) as f:
    spec = json.load(f)
  os.chdir(REPO)
  sys.path.insert(0, REPO)
  from absl import app, flags
  from absl import logging  # noqa: F401  (its flags belong to the baseline)
  from ml_collections import config_flags  # noqa: F401
  app.define_help_flags()
  signal.signal(signal.SIGALRM, _on_alarm)
  baseline = set(flags.FLAGS)
  root = spec['root']
  results = {}
  for case in spec['cases']:
    before = snapshot(root)
    result = run_case(spec['entry'], case['argv'], baseline)
    result['changed'] = changes(before, snapshot(root))
    results[case['id']] = result
  with open(results_path, 'w') as f:
    json.dump(results, f)


if __name__ == '__main__':
  main()
