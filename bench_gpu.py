"""Every benchmark of this codebase in one run, for an accelerator: JSON + Markdown in --out.

  python bench_gpu.py --out runs/bench_gpu                 # on the GPU
  python bench_gpu.py --out /tmp/bench_smoke --smoke       # any machine, < 60 s on a CPU

Sections, each in float32 and bfloat16 compute (`model.dtype`; parameters and optimiser
state stay float32):
  sizes   the train step (forward, backward, AdamW) of tiny / small / standard with every
          mixer, on linear-regression prompts of the size's full length (bench.py's worker)
  seeds   N models trained at once in one vmapped step (bench.py --seeds), tiny
  garg    Garg et al.'s standard configuration (its curriculum, batch 64) for --garg_steps
          steps, with the time 500k steps would take
  chunks  one mixer's forward + backward at tiny width against chunk_size, for the mixers
          with a chunk-parallel form (the data behind their default chunk sizes)
Each sizes / seeds / garg configuration runs in a fresh process (its peak memory is its own)
unless --in_process or --smoke. bench.py's flags apply: --sizes, --mixers (empty: all),
--seeds (empty: 1,8,32), --steps (timed steps per configuration; 0: 20), --batch.
--smoke: the tiny size only, 8-token prompts, batch 2, one timed step, seeds 1,2, the garg
section on tiny, 16-token chunks section; it checks the plumbing, not the speed.
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags

import bench  # defines --sizes, --mixers, --seeds, --steps, --batch, --peak_trials
from cli import parse_flags

_OUT = flags.DEFINE_string('out', '', 'Directory for bench_gpu.json and bench_gpu.md.')
_SMOKE = flags.DEFINE_bool('smoke', False, 'Tiny shapes and one step each, in this process.')
_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes to time.')
_GARG_STEPS = flags.DEFINE_integer('garg_steps', 2000, "Timed steps of Garg's standard config.")
_IN_PROCESS = flags.DEFINE_bool('in_process', False, 'Run every configuration in this process '
                                '(faster start; peak memory is then the running maximum).')
_CHUNK_LENGTHS = flags.DEFINE_list('chunk_lengths', ['512', '2048'],
                                   'Sequence lengths of the chunks section.')

TASK = 'linear_regression'
CHUNK_SIZES = (16, 64)   # against each mixer's reference form
# The form each chunked mixer is compared with: its option chunk_size there.
CHUNK_REFERENCE = {'mamba': 0, 'rwkv': 0, 's4d': 0, 'gla': 1, 'retention': 1,
                   'linear_attention': 1}
GARG_FULL_STEPS = 500_000


def mixer_names():
  from models.mixers import MIXERS
  if bench._MIXERS.value not in ('', 'all'):
    return bench._MIXERS.value.split(',')
  return sorted(n for n in MIXERS if n != 'ngram_head')   # needs token inputs


def prompt_tokens(size):
  """Tokens of a full linear-regression prompt of this size: two per point."""
  import importlib
  return 2 * importlib.import_module(f'configs.{TASK}').get_config(size).task.n_points


def run_spec(spec):
  """One configuration's row from bench.py's worker (a fresh process unless in-process)."""
  if _IN_PROCESS.value or _SMOKE.value:
    return bench._time_one(spec)
  return bench.spawn(spec)


def calls_for(steps, steps_per_call):
  return max(1, steps // steps_per_call)


def size_rows(dtype):
  """Train-step rows for every (size, mixer)."""
  smoke = _SMOKE.value
  rows = []
  for size in (['tiny'] if smoke else bench._SIZES.value):
    steps_per_call = 1 if smoke else (10 if size == 'tiny' else 5)
    for mixer in mixer_names():
      spec = dict(task=TASK, size=size, dtype=dtype, mixer=mixer,
                  length=8 if smoke else prompt_tokens(size), batch=2 if smoke else
                  bench._BATCH.value, steps_per_call=steps_per_call,
                  calls=1 if smoke else calls_for(bench._STEPS.value or 20, steps_per_call))
      rows.append(dict(run_spec(spec), section='sizes'))
  return rows


def seed_rows(dtype):
  """The vmapped-seed table: one step training N tiny models at once, N from --seeds."""
  smoke = _SMOKE.value
  counts = [1, 2] if smoke else [int(n) for n in (bench._SEEDS.value or ['1', '8', '32'])]
  steps_per_call = 1 if smoke else 10
  rows = []
  for n in counts:
    spec = dict(task=TASK, size='tiny', dtype=dtype, num_seeds=n,
                batch=2 if smoke else bench._BATCH.value, steps_per_call=steps_per_call,
                calls=1 if smoke else calls_for(bench._STEPS.value or 20, steps_per_call))
    row = dict(run_spec(spec), section='seeds')
    base = rows[0] if rows else row
    row['throughput_ratio'] = (n / row['step_ms']) / (base['num_seeds'] / base['step_ms'])
    rows.append(row)
  return rows


def garg_row(dtype):
  """Garg et al.'s standard configuration timed for --garg_steps steps (tiny under --smoke)."""
  smoke = _SMOKE.value
  steps_per_call = 1 if smoke else 10
  steps = 2 if smoke else _GARG_STEPS.value
  spec = dict(task=TASK, size='tiny' if smoke else 'standard', dtype=dtype,
              batch=2 if smoke else 0, steps_per_call=steps_per_call,
              calls=calls_for(steps, steps_per_call))
  row = dict(run_spec(spec), section='garg')
  row['timed_steps'] = row['calls'] * steps_per_call
  row['timed_s'] = row['timed_steps'] * row['step_ms'] / 1000
  row['full_run_hours'] = GARG_FULL_STEPS * row['step_ms'] / 3.6e6
  return row


def time_mixer(name, chunk_size, length, dtype, batch=8, reps=3):
  """Median ms of one compiled forward + backward of mixer `name` alone (d=64, 2 heads)."""
  import jax
  import jax.numpy as jnp
  import ml_collections
  import numpy as np
  from flax import nnx
  from models.mixers import MIXERS, MixerSpec
  cls = MIXERS[name]
  options = dict(cls.default_options, chunk_size=chunk_size)
  spec = MixerSpec(d_model=64, num_heads=2, max_len=length, position='none',
                   dtype=jnp.dtype(dtype))
  mixer = cls(spec, ml_collections.ConfigDict(options), rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(mixer, nnx.Param, ...)
  x = jax.random.normal(jax.random.key(1), (batch, length, 64)).astype(dtype)
  loss = lambda p: jnp.mean(nnx.merge(graphdef, p, rest)(x).astype(jnp.float32) ** 2)
  step = jax.jit(jax.value_and_grad(loss))
  jax.block_until_ready(step(params))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(step(params))
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def chunk_rows(dtype):
  """Mixer-only timings of each chunked mixer: reference form and chunk sizes."""
  import jax
  smoke = _SMOKE.value
  lengths = [16] if smoke else [int(n) for n in _CHUNK_LENGTHS.value]
  rows = []
  chosen = set(mixer_names())   # --mixers narrows this section too
  for name, reference in CHUNK_REFERENCE.items():
    if name not in chosen:
      continue
    for chunk in (reference,) + ((4,) if smoke else CHUNK_SIZES):
      for length in lengths:
        rows.append(dict(section='chunks', mixer=name, chunk_size=chunk, seq_len=length,
                         dtype=dtype, d_model=64, heads=2, batch=2 if smoke else 8,
                         step_ms=time_mixer(name, chunk, length, dtype, 2 if smoke else 8,
                                            1 if smoke else 3),
                         device=jax.devices()[0].device_kind))
  return rows


def markdown(result):
  """One Markdown table: a row per configuration, sections in order."""
  head = ('| section | size | mixer | dtype | seeds | chunk | seq | batch | params | compile (s) '
          '| step (ms) | steps/s | examples/s | peak mem (MiB) | MFU meas. | note |')
  lines = [f'device: {result["device"]}; smoke: {result["smoke"]}', '', head,
           '|' + '---|' * 16]
  cell = lambda row, key, fmt: (fmt.format(row[key]) if row.get(key) is not None else '')
  for row in result['rows']:
    note = ''
    if row['section'] == 'garg':
      note = (f'{row["timed_steps"]} steps in {row["timed_s"]:.1f} s; '
              f'{GARG_FULL_STEPS:,} steps: {row["full_run_hours"]:.1f} h')
    elif row['section'] == 'seeds':
      note = f'throughput {row["throughput_ratio"]:.2f}x N=1'
    lines.append('| ' + ' | '.join([
        row['section'], row.get('size', 'tiny width'), row.get('mixer', ''), row['dtype'],
        cell(row, 'num_seeds', '{}'), cell(row, 'chunk_size', '{}'), cell(row, 'seq_len', '{}'),
        cell(row, 'batch', '{}'), cell(row, 'params', '{:,}'), cell(row, 'compile_s', '{:.1f}'),
        cell(row, 'step_ms', '{:.2f}'), cell(row, 'steps_per_s', '{:.1f}'),
        cell(row, 'examples_per_s', '{:.0f}'), cell(row, 'peak_memory_mb', '{:.0f}'),
        cell(row, 'mfu_measured', '{:.1%}'), note]) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv):
  from cli import fail, quiet_logs
  quiet_logs()
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  if not _OUT.value:
    fail('--out is required: the directory for bench_gpu.json and bench_gpu.md')
  bad = [d for d in _DTYPES.value if d not in ('float32', 'bfloat16')]
  if bad or not _DTYPES.value:
    fail(f'--dtypes={",".join(_DTYPES.value)!r} is invalid: allowed float32, bfloat16')
  if _GARG_STEPS.value < 1:
    fail(f'--garg_steps={_GARG_STEPS.value} is invalid: must be >= 1')
  from models.mixers import MIXERS
  if any(m not in MIXERS for m in mixer_names()):
    fail(f'--mixers={bench._MIXERS.value!r} is invalid: known {", ".join(sorted(MIXERS))}, or all')
  os.makedirs(_OUT.value, exist_ok=True)
  import jax
  from training import perf
  start = time.perf_counter()
  result = dict(device=f'{jax.devices()[0].device_kind} x{jax.device_count()}',
                smoke=_SMOKE.value, matmul_peak={}, rows=[])
  for dtype in _DTYPES.value:
    peak = (perf.measure_matmul_peak(dtype, n=128, trials=2, min_trial_s=0.01, warmup_s=0.01)
            if _SMOKE.value else perf.measure_matmul_peak(dtype, trials=bench._PEAK_TRIALS.value))
    result['matmul_peak'][dtype] = peak.to_dict()
    rows = size_rows(dtype) + seed_rows(dtype) + [garg_row(dtype)] + chunk_rows(dtype)
    for row in rows:
      if 'achieved_flops' in row:
        row['mfu_measured'] = row['achieved_flops'] / peak.median
      print(f'{row["section"]:6s} {row.get("size", ""):8s} {row.get("mixer", ""):22s} {dtype:8s} '
            f'{row["step_ms"]:9.2f} ms', flush=True)
    result['rows'].extend(rows)
  result['wall_s'] = time.perf_counter() - start
  with open(os.path.join(_OUT.value, 'bench_gpu.json'), 'w') as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(_OUT.value, 'bench_gpu.md'), 'w') as f:
    f.write(markdown(result))
  print(f'wrote {_OUT.value}/bench_gpu.json and bench_gpu.md in {result["wall_s"]:.0f} s')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
