"""Benchmark the compiled train step.

  python bench.py                          # tiny / small / standard on linear regression
  python bench.py --sizes=standard --steps=20
  python bench.py --mixers=all --lengths=128,256,512,1024,2048,4096   # step time vs length
  python bench.py --seeds=1,8,32           # one step training N tiny models at once vs 1
  python bench.py --preference=runs/regbench_tiny   # preference steps: on-policy vs offline

Prints the matrix-multiply peak (measured here: median and spread of repeated timed trials;
theoretical: from the CPU's vector units and clock, or the GPU's datasheet, where known), then
a markdown table: compile time, steps/s, examples/s, peak memory, and model FLOP utilisation
against both peaks. Each configuration runs in a fresh subprocess so that peak memory is its
own. Peak measurement lives in training/perf.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

from cli import parse_flags

_SIZES = flags.DEFINE_list('sizes', ['tiny', 'small', 'standard'], 'Model sizes to time.')
_TASK = flags.DEFINE_string('task', 'linear_regression', 'Task config under configs/.')
_STEPS = flags.DEFINE_integer('steps', 0, 'Timed train steps (0: about 10 s worth).')
_MIXERS = flags.DEFINE_string('mixers', '', "Comma list of mixers (an entry may set options: "
                              "mamba:scan=sequential:block_size=8), or 'all': time the step "
                              'across --lengths instead of the sizes table.')
_LENGTHS = flags.DEFINE_list('lengths', ['128', '256', '512', '1024', '2048', '4096'],
                             'Sequence lengths (tokens) for --mixers.')
_BATCH = flags.DEFINE_integer('batch', 0, 'Batch size override (0: the config\'s).')
_DTYPE = flags.DEFINE_string('dtype', 'float32', 'Compute dtype: float32 | bfloat16.')
_SEEDS = flags.DEFINE_list('seeds', [], 'Seed counts N (e.g. 1,8,32): time one step training '
                           'N models at once (train.num_seeds) of the first --sizes entry.')
_STEPS_PER_CALL = flags.DEFINE_integer('steps_per_call', 0, 'Fused steps per call (0: 10 for '
                                       'tiny, 5 for small and standard).')
_KEEP_FREED_MEMORY = flags.DEFINE_bool(
    'keep_freed_memory', False, 'Workers keep freed host memory (training.perf.'
    'keep_freed_memory): no per-call page faults on the CPU backend.')
_PEAK_TRIALS = flags.DEFINE_integer('peak_trials', 20, 'Timed trials of the matmul peak.')
_PREFERENCE = flags.DEFINE_string(
    'preference', '', 'A pretrained REGBENCH run (with its offline pairs built by python -m '
    'training.preference_data): time the preference step of configs/preference_regbench.py '
    'on-policy, offline and as filtered SFT, same model and batch.')
_JSON = flags.DEFINE_string('json', '', 'Also write the rows to this JSON file.')
_WORKER = flags.DEFINE_string('_worker', '', 'Internal: run one configuration.')


def model_flops_per_step(config, io, param_count_nonembed, num_layers, d_model, seq_len,
                         batch):
  """PaLM-style model FLOPs of one train step: 6 N T plus causal-attention score FLOPs."""
  tokens = batch * seq_len
  dense = 6 * param_count_nonembed * tokens
  attention_layers = sum(1 for name in str(config.model.mixer).split(',')
                         if name.strip() in ('attention', 'momentum_attention'))
  pattern = [n for n in str(config.model.mixer).split(',') if n.strip()]
  attention_layers = attention_layers * num_layers // max(len(pattern), 1)
  attention = 6 * 2 * attention_layers * batch * seq_len * seq_len * d_model
  return dense + attention


def peak_memory_bytes():
  import jax
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return stats['peak_bytes_in_use']
  import resource
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # CPU: process peak RSS


def run_worker(spec):
  """One configuration (or one per entry of spec['lengths']): prints JSON rows."""
  if spec.get('keep_freed_memory'):
    from training.perf import keep_freed_memory
    keep_freed_memory()      # before JAX starts its thread pools
  if 'lengths' in spec:
    rows = []
    for length in spec['lengths']:
      rows.append(_time_one({**spec, 'length': length}))
    print('ROW ' + json.dumps(rows))
    return
  print('ROW ' + json.dumps(_time_one(spec)))


def _train_fn_api():
  """(init_state, make_setup, compile(setup, graphdef, rest, state, n) -> call(state) -> (state,
  metrics)) for the loop's current API (step.py's (state, rest, frozen) step or the older
  loop.py's state-only step)."""
  import inspect
  import jax
  import jax.numpy as jnp
  try:
    from training.setup import make_setup
    from training.step import init_state, make_train_fn
  except ImportError:
    from training.loop import init_state, make_setup, make_train_fn
  if 'rest' in inspect.signature(make_train_fn).parameters:      # make_train_fn(setup, g, rest, n)
    def compile_fn(setup, graphdef, rest, state, n):
      return make_train_fn(setup, graphdef, rest, n).lower(state).compile()
  else:                                                           # (state, rest_N, frozen)
    def compile_fn(setup, graphdef, rest, state, n):
      # Objectives with a frozen reference (preference): the initial parameters stand in.
      frozen = (jax.tree.map(jnp.copy, state['params'])
                if setup.objective_metadata.get('needs_reference') else None)
      compiled = make_train_fn(setup, graphdef, n).lower(state, rest, frozen).compile()
      return lambda state: compiled(state, rest, frozen)
  return init_state, make_setup, compile_fn


def parse_mixer_variant(entry):
  """'mamba:scan=sequential:block_size=8' -> ('mamba', {'scan': 'sequential', 'block_size': 8}):
  a mixer of --mixers with some of its options set (numbers parsed as int or float)."""
  name, *pairs = entry.split(':')
  options = {}
  for pair in pairs:
    key, _, value = pair.partition('=')
    for kind in (int, float):
      try:
        value = kind(value)
        break
      except ValueError:
        pass
    options[key] = value
  return name, options


def _bad_mixer_variant(entry, mixers):
  """The one-line error for a bad --mixers entry, or ''."""
  name, options = parse_mixer_variant(entry)
  if name not in mixers:
    return f'--mixers entry {entry!r} is invalid: known {", ".join(sorted(mixers))}, or all'
  for pair in entry.split(':')[1:]:
    key = pair.partition('=')[0]
    if '=' not in pair or key not in mixers[name].default_options:
      return (f'--mixers entry {entry!r} is invalid: {pair!r} is not key=value with a key '
              f'of {name} ({", ".join(sorted(mixers[name].default_options))})')
  return ''


def _time_one(spec):
  """Compile, warm up and time one configuration; returns its row."""
  import jax
  from flax import nnx
  from models.model import param_count
  import importlib
  init_state, make_setup, compile_fn = _train_fn_api()
  module = importlib.import_module(f'configs.{spec["task"]}')
  config = module.get_config(spec['size'])
  config.model.dtype = spec['dtype']
  if spec.get('mixer'):
    name, options = parse_mixer_variant(spec['mixer'])
    config.model.mixer = name
    for key, value in options.items():
      config.model.mixer_options[name][key] = value
    from models.zoo import position_for   # the one rule of every sweep
    config.model.position = position_for(name)
    if 'seq_len' in config.task:       # token tasks: the context length itself
      config.task.seq_len = spec['length']
    else:                              # regression prompts of `length` tokens: 2 per point
      config.task.n_points = spec['length'] // 2
      config.task.curriculum = False
  if spec.get('batch'):
    config.train.batch_size = spec['batch']
  for key, value in spec.get('overrides', {}).items():
    section, name = key.split('.')
    config[section][name] = value
  num_seeds = spec.get('num_seeds', 1)
  if 'num_seeds' in spec:
    if 'num_seeds' not in config.train:
      raise RuntimeError('config.train.num_seeds does not exist in this version of the configs: '
                         '--seeds needs the vmapped multi-seed step')
    config.train.num_seeds = num_seeds
    if 'seed_batch' in spec:
      config.train.seed_batch = spec['seed_batch']
  steps_per_call = spec['steps_per_call']
  config.train.steps_per_call = steps_per_call
  config.train.checkpoint_every = steps_per_call
  setup = make_setup(config)
  graphdef, rest, state = init_state(setup)
  io = setup.task.io()
  embed = sum(x.size for x in jax.tree.leaves(nnx.state(setup.model.read_in, nnx.Param)))
  if setup.model.learned_positions:
    embed += sum(x.size for x in jax.tree.leaves(
        nnx.state(setup.model.position_embedding, nnx.Param)))
  params = param_count(setup.model)                 # one model (seed 0)
  t0 = time.perf_counter()
  compiled = compile_fn(setup, graphdef, rest, state, steps_per_call)
  compile_s = time.perf_counter() - t0
  state, metrics = compiled(state)
  jax.block_until_ready(metrics)
  calls = spec['calls']
  if calls == 0:  # about 10 s
    t0 = time.perf_counter()
    state, metrics = compiled(state)
    jax.block_until_ready(metrics)
    calls = max(1, int(10.0 / max(time.perf_counter() - t0, 1e-6)))
  t0 = time.perf_counter()
  for _ in range(calls):
    state, metrics = compiled(state)
  jax.block_until_ready(metrics)
  elapsed = time.perf_counter() - t0
  steps_per_s = calls * steps_per_call / elapsed
  batch = config.train.batch_size
  flops = num_seeds * model_flops_per_step(config, io, params - embed, config.model.num_layers,
                                           config.model.d_model, io.seq_len, batch)
  row = dict(task=spec['task'], size=spec['size'], mixer=config.model.mixer,
             objective=config.objective.name,
             mode=config.objective.get('mode', ''),
             layers=config.model.num_layers, d_model=config.model.d_model,
             heads=config.model.num_heads, seq_len=io.seq_len, batch=batch,
             num_seeds=num_seeds, steps_per_call=steps_per_call, calls=calls,
             params=params, compile_s=compile_s, steps_per_s=steps_per_s,
             step_ms=1000 / steps_per_s, seed_step_ms=1000 / steps_per_s / num_seeds,
             examples_per_s=steps_per_s * batch * num_seeds,
             tokens_per_s=steps_per_s * batch * io.seq_len * num_seeds,
             peak_memory_mb=peak_memory_bytes() / 2 ** 20,
             model_flops_per_step=flops, achieved_flops=flops * steps_per_s,
             device=jax.devices()[0].device_kind, num_devices=jax.device_count(),
             dtype=spec['dtype'], state_size=setup.model.state_size(),
             keep_freed_memory=bool(spec.get('keep_freed_memory')))
  return row


def _default_steps_per_call(size):
  if _STEPS_PER_CALL.value:
    return _STEPS_PER_CALL.value
  return 10 if size == 'tiny' else 5


def _mfu_cells(row, measured, theoretical):
  row['mfu_measured'] = row['achieved_flops'] / measured.median
  row['mfu_theoretical'] = row['achieved_flops'] / theoretical.flops if theoretical else None
  return (f'{100 * row["mfu_measured"]:.0f}% | ' +
          (f'{100 * row["mfu_theoretical"]:.0f}%' if theoretical else 'n/a'))


def spawn(spec):
  env = dict(os.environ)
  cmd = [sys.executable, os.path.abspath(__file__), f'--_worker={json.dumps(spec)}']
  out = subprocess.run(cmd, capture_output=True, text=True, env=env)
  for line in out.stdout.splitlines():
    if line.startswith('ROW '):
      return json.loads(line[4:])
  sys.stderr.write(out.stderr[-3000:])
  raise RuntimeError(f'benchmark worker failed for {spec}')


def print_peaks(dtype, trials):
  """Measures and prints the matmul peak; returns (MatmulPeak, TheoreticalPeak or None)."""
  import jax
  from training import perf
  measured = perf.measure_matmul_peak(dtype, trials=trials)
  theoretical = perf.theoretical_peak(dtype)
  device = jax.devices()[0]
  unit, name = (1e12, 'TFLOP/s') if device.platform != 'cpu' else (1e9, 'GFLOP/s')
  print(f'device: {device.device_kind} x{jax.device_count()}; {perf.usable_cpu_cores():g} usable '
        f'CPU cores')
  print(f'{dtype} matmul peak, measured: {measured.describe(unit, name)}')
  if theoretical:
    print(f'{dtype} peak, theoretical: {theoretical.flops / unit:.1f} {name} '
          f'({theoretical.description})')
  else:
    print(f'{dtype} peak, theoretical: not known for this hardware')
  print('MFU: model FLOP/s over the measured median (MFU meas.) and over the theoretical '
        'peak (MFU theor.)')
  return measured, theoretical


def main(argv):
  from cli import quiet_logs
  quiet_logs()
  if not _WORKER.value:   # bad arguments: one line each, before anything is measured
    from cli import fail
    from configs.common import SIZES
    from models.mixers import MIXERS
    json_dir = os.path.dirname(os.path.abspath(_JSON.value or '.'))
    mixers = [] if _MIXERS.value in ('', 'all') else _MIXERS.value.split(',')
    for bad, message in (
        (len(argv) > 1, f'unexpected arguments {argv[1:]}'),
        (not _SIZES.value, f'--sizes is empty: allowed {", ".join(SIZES)}'),
        (any(s not in SIZES for s in _SIZES.value), f'--sizes={",".join(_SIZES.value)!r} is '
         f'invalid: allowed {", ".join(SIZES)}'),
        (_STEPS.value < 0, f'--steps={_STEPS.value} is invalid: must be >= 0 (0: about 10 s)'),
        (_BATCH.value < 0, f'--batch={_BATCH.value} is invalid: must be >= 0 (0: the config\'s)'),
        (_DTYPE.value not in ('float32', 'bfloat16'), f'--dtype={_DTYPE.value!r} is invalid: '
         f'allowed float32, bfloat16'),
        (not os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                                         f'{_TASK.value}.py')),
         f'--task={_TASK.value!r} is invalid: there is no configs/{_TASK.value}.py'),
        *((bool(message), message) for message in (_bad_mixer_variant(m, MIXERS)
                                                    for m in mixers)),
        (not _LENGTHS.value or not all(l.isdigit() and int(l) >= 2 for l in _LENGTHS.value),
         f'--lengths={",".join(_LENGTHS.value)!r} is invalid: integers >= 2'),
        (bool(_PREFERENCE.value) and not os.path.isdir(os.path.join(_PREFERENCE.value,
                                                                     'preference_pairs')),
         f'--preference={_PREFERENCE.value!r} is invalid: no {_PREFERENCE.value}/'
         f'preference_pairs (train the run, then python -m training.preference_data '
         f'--config configs/preference_regbench.py:tiny --config.train.init_from=RUN)'),
        (bool(_JSON.value) and (os.path.isdir(_JSON.value) or not os.path.isdir(json_dir) or
                                not os.access(json_dir, os.W_OK)),
         f'--json={_JSON.value!r} is invalid: not a writable file path (is its directory there?)'),
    ):
      if bad:
        fail(message)
  del argv
  if _WORKER.value:
    run_worker(json.loads(_WORKER.value))
    return
  import jax
  measured, theoretical = print_peaks(_DTYPE.value, _PEAK_TRIALS.value)
  device = jax.devices()[0].device_kind
  keep = _KEEP_FREED_MEMORY.value
  rows = []
  if _MIXERS.value:
    from models.mixers import MIXERS
    names = sorted(n for n in MIXERS if n != 'ngram_head') if _MIXERS.value == 'all' \
        else _MIXERS.value.split(',')
    print('| mixer | params | ' + ' | '.join(f'{l} tok (ms)' for l in _LENGTHS.value) +
          ' | last doubling |')
    print('|---|---|' + '---|' * (len(_LENGTHS.value) + 1))
    for name in names:
      spec = dict(task=_TASK.value, size=_SIZES.value[0], dtype=_DTYPE.value, mixer=name,
                  lengths=[int(l) for l in _LENGTHS.value], batch=_BATCH.value or 8,
                  steps_per_call=_STEPS_PER_CALL.value or 1, calls=_STEPS.value or 3,
                  keep_freed_memory=keep)
      mixer_rows = spawn(spec)  # one process per mixer, every length
      rows.extend(mixer_rows)
      cells = [f'{row["step_ms"]:.1f}' for row in mixer_rows]
      ratio = mixer_rows[-1]['step_ms'] / mixer_rows[-2]['step_ms'] if len(mixer_rows) > 1 else 1
      print(f'| {name} | {mixer_rows[0]["params"]:,} | ' + ' | '.join(cells) +
            f' | {ratio:.1f}x |', flush=True)
  elif _PREFERENCE.value:
    run = _PREFERENCE.value
    variants = (('preference (DPO)', 'preference', 'on_policy'),
                ('preference (DPO)', 'preference', 'offline'),
                ('filtered SFT', 'sft', 'on_policy'), ('filtered SFT', 'sft', 'offline'))
    print('configs/preference_regbench.py:tiny (169k parameters), batch 32 prompts x 2 '
          'completions of 13 tokens; one step = sampling (on-policy) or a dataset read '
          '(offline), judge, policy and reference forward, backward, update')
    print('| objective | mode | compile (s) | step (ms) | prompts/s | peak mem (MiB) |')
    print('|---|---|---|---|---|---|')
    for label, objective, mode in variants:
      overrides = {'train.init_from': run, 'objective.name': objective, 'objective.mode': mode,
                   'objective.offline_data': os.path.join(run, 'preference_pairs')}
      spec = dict(task='preference_regbench', size='tiny', dtype=_DTYPE.value,
                  batch=_BATCH.value, steps_per_call=_STEPS_PER_CALL.value or 5,
                  calls=_STEPS.value // (_STEPS_PER_CALL.value or 5) if _STEPS.value else 0,
                  overrides=overrides, keep_freed_memory=keep)
      row = spawn(spec)
      rows.append(row)
      print(f'| {label} | {mode} | {row["compile_s"]:.1f} | {row["step_ms"]:.1f} | '
            f'{row["examples_per_s"]:.0f} | {row["peak_memory_mb"]:.0f} |', flush=True)
  elif _SEEDS.value:
    size = _SIZES.value[0]
    steps_per_call = _default_steps_per_call(size)
    print(f'{size} model, {steps_per_call} steps per call: N seeds trained at once '
          f'(train.num_seeds=N) in one compiled step, looped (train.seed_batch=1, a lax.map) '
          f'or all vmapped (train.seed_batch=N)')
    print('| seeds N | layout | params/seed | batch/seed | compile (s) | step (ms) | ms per seed-step | '
          'step time / N=1 | seed-steps/s | throughput / N=1 | peak mem (MiB) | MFU meas. | '
          'MFU theor. |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    base = None
    layouts = [(int(x), b) for x in _SEEDS.value
               for b in ((1, int(x)) if int(x) > 1 else (1,))]
    for n, seed_batch in layouts:
      calls = _STEPS.value // steps_per_call if _STEPS.value else 0
      spec = dict(task=_TASK.value, size=size, dtype=_DTYPE.value, batch=_BATCH.value,
                  steps_per_call=steps_per_call, calls=calls, num_seeds=n,
                  seed_batch=seed_batch, keep_freed_memory=keep)
      row = spawn(spec)
      row['layout'] = 'single' if n == 1 else ('looped' if seed_batch == 1 else 'vmapped')
      base = base or row                     # the first N listed is the reference
      row['step_ratio'] = row['step_ms'] / base['step_ms']
      row['throughput_ratio'] = (row['num_seeds'] / row['step_ms']) / (
          base['num_seeds'] / base['step_ms'])
      rows.append(row)
      print(f'| {n} | {row["layout"]} | {row["params"]:,} | {row["batch"]} | {row["compile_s"]:.1f} | '
            f'{row["step_ms"]:.1f} | {row["seed_step_ms"]:.2f} | {row["step_ratio"]:.2f}x | '
            f'{1000 / row["seed_step_ms"]:.1f} | {row["throughput_ratio"]:.2f}x | '
            f'{row["peak_memory_mb"]:.0f} | {_mfu_cells(row, measured, theoretical)} |',
            flush=True)
  else:
    print('| size | layers/width/heads | params | seq | batch | steps/call | compile (s) | '
          'steps/s | examples/s | peak mem (MiB) | model TFLOP/s | MFU meas. | MFU theor. |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for size in _SIZES.value:
      steps_per_call = _default_steps_per_call(size)
      calls = _STEPS.value // steps_per_call if _STEPS.value else 0
      spec = dict(task=_TASK.value, size=size, dtype=_DTYPE.value, batch=_BATCH.value,
                  steps_per_call=steps_per_call, calls=calls, keep_freed_memory=keep)
      row = spawn(spec)
      rows.append(row)
      print(f'| {size} | {row["layers"]}/{row["d_model"]}/{row["heads"]} | {row["params"]:,} | '
            f'{row["seq_len"]} | {row["batch"]} | {steps_per_call} | {row["compile_s"]:.1f} | '
            f'{row["steps_per_s"]:.2f} | {row["examples_per_s"]:.0f} | '
            f'{row["peak_memory_mb"]:.0f} | {row["achieved_flops"] / 1e12:.3f} | '
            f'{_mfu_cells(row, measured, theoretical)} |', flush=True)
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump({'matmul_peak': measured.to_dict(),
                 'theoretical_peak_flops': theoretical.flops if theoretical else None,
                 'theoretical_peak': theoretical.description if theoretical else None,
                 'device': device, 'rows': rows}, f, indent=2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
