"""What the studies share: their runs (trained, resumed, or reused once finished), cached
intermediate results, and their output: OUT/<name>.json, OUT/<name>.md (the table, also
printed) and OUT/<name>.png beside them."""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Optional


def train_run(config, workdir: str, log: Callable[[str], None] = print, **train_kwargs) -> float:
  """Brings the run in `workdir` to `config.train.num_steps` steps: trains it from scratch,
  resumes it, or leaves it as it is when it has finished (training.loop.train, with the hooks
  analysis adds: the suites of `eval.train_suites`). Returns the seconds that took (about 0
  for a finished run)."""
  from analysis.train_suites import training_hooks
  from training.loop import train
  start = time.time()
  train(config, workdir, log=log, **{'hooks': training_hooks(config), **train_kwargs})
  return time.time() - start


def pyplot():
  """matplotlib.pyplot on the Agg backend: figures go to files, no display is needed."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as JSON (NumPy scalars as floats) through a temporary file, so a reader
  never sees half a file."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=1, default=float)
  os.replace(tmp, path)


def cached_json(path: str, compute: Callable[[], Any],
                valid: Callable[[Any], bool] = lambda cached: True) -> Any:
  """The JSON at `path` when it exists and `valid(it)`; otherwise compute(), written there
  (directories created) and returned."""
  if os.path.exists(path):
    with open(path) as f:
      cached = json.load(f)
    if valid(cached):
      return cached
  result = compute()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  write_json(path, result)
  return result


def write_results(out: str, name: str, result: Any, table: str, *,
                  plot: Optional[Callable[[str], None]] = None, table_in_json: bool = True,
                  log: Callable[[str], None] = print) -> None:
  """Writes OUT/<name>.json (`result`; with the table under 'table' when `table_in_json`),
  OUT/<name>.md (the table) and, given `plot`, plot(OUT/<name>.png); creates OUT if needed,
  then logs the table and the files."""
  os.makedirs(out, exist_ok=True)
  stem = os.path.join(out, name)
  write_json(stem + '.json', dict(result, table=table) if table_in_json else result)
  with open(stem + '.md', 'w') as f:
    f.write(table + '\n')
  if plot is not None:
    plot(stem + '.png')
  log(table)
  log(f'wrote {stem}.{{json,md,png}}' if os.path.exists(stem + '.png')
      else f'wrote {stem}.{{json,md}}')
