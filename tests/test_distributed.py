"""Multi-process training on one machine: two CPU processes joined by `jax.distributed`
(a local coordinator, Gloo collectives) train the same run as one process.

Each process sees 2 CPU devices, so the global 'data' mesh has 4 devices spread over two
processes; the reference run is one process with 4 devices. Process 0 alone writes
config.json, metrics.jsonl and holds the workdir lock; both write the orbax checkpoints
into the shared workdir. The run is then extended (resumed from the multi-process
checkpoint by both processes) and must still match, and its last checkpoint must restore in
a single process (as eval.py does).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 300          # per launch; a hung collective or coordinator is killed after this

FLAGS = [
    '--config', 'configs/linear_regression.py:tiny',
    '--config.task.n_dims=4', '--config.task.n_points=8',
    '--config.model.num_layers=2', '--config.model.d_model=32',
    '--config.train.batch_size=16', '--config.train.steps_per_call=5',
    '--config.train.log_every=5', '--config.train.checkpoint_every=10',
    '--config.train.progress=False', '--config.eval.num_log_evals=0',
    '--config.train.keep_log_checkpoints=0',
    # A constant schedule after a short warm-up: losses move, and extending num_steps on
    # resume does not change the learning rate of the steps already taken.
    '--config.train.schedule=constant', '--config.train.warmup_steps=5',
    '--config.train.learning_rate=0.01',
]


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _multiprocess_cpu_unavailable():
  """Why this machine cannot run multi-process JAX on CPU, or None."""
  try:
    _free_port()
  except OSError as e:
    return f'cannot bind a TCP port on 127.0.0.1 for the coordinator ({e})'
  from jax._src.lib import _jax
  if not hasattr(_jax, 'make_gloo_tcp_collectives'):
    return 'this jaxlib has no Gloo CPU collectives (needed across CPU processes)'
  return None


def _env(devices: int, **extra) -> dict:
  # XLA's default optimisation level, not the suite's FAST_COMPILE: at level 0 the 2 x 2-device
  # and 1 x 4-device programs round differently enough (2e-5 in the predictions after 30 Adam
  # steps) to exceed the tolerance below.
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(('JAX_', 'XLA_')) and '_proxy' not in k.lower()}
  env.update(JAX_PLATFORMS='cpu', XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             PYTHONUNBUFFERED='1', **extra)
  return env


def _launch(workdir, num_steps, env):
  args = [sys.executable, 'train.py', *FLAGS, f'--workdir={workdir}',
          f'--config.train.num_steps={num_steps}']
  if 'JAX_PROCESS_ID' in env:
    args.append('--config.train.distributed=True')
  # Own session: the whole process group can be killed, whatever it spawned.
  return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill(proc):
  if proc.poll() is None:
    try:
      os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  try:
    proc.communicate(timeout=10)
  except Exception:   # pylint: disable=broad-except
    pass


def _wait_all(procs, names):
  """Waits for every process (one shared deadline); kills them all on timeout or failure."""
  deadline = time.time() + TIMEOUT_S
  outputs = {}
  try:
    for proc, name in zip(procs, names):
      try:
        outputs[name] = proc.communicate(timeout=max(deadline - time.time(), 1))[0]
      except subprocess.TimeoutExpired:
        pytest.fail(f'{name} did not finish within {TIMEOUT_S}s (killed)')
      if proc.returncode != 0:
        pytest.fail(f'{name} exited with {proc.returncode}:\n{outputs[name][-3000:]}')
  finally:
    for proc in procs:
      _kill(proc)
  return outputs


def _run_distributed(workdir, num_steps, port):
  procs = []
  try:
    for pid in range(2):
      # The coordinator (in process 0) listens on loopback only, not on every interface.
      env = _env(2, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JAX_NUM_PROCESSES='2',
                 JAX_PROCESS_ID=str(pid), JAX_COORDINATOR_BIND_ADDRESS=f'127.0.0.1:{port}')
      procs.append(_launch(workdir, num_steps, env))
  except BaseException:
    for proc in procs:
      _kill(proc)
    raise
  return procs


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {r['step']: (r['loss'], r['grad_norm']) for r in rows if r.get('kind', 'train') == 'train'}


def _assert_same_losses(got, want, steps):
  assert sorted(got) == steps, f'logged steps {sorted(got)}, expected {steps}'
  for step in steps:
    np.testing.assert_allclose(got[step], want[step], rtol=1e-4,
                               err_msg=f'loss / grad_norm at step {step}')


def test_two_processes_match_one(tmp_path):
  reason = _multiprocess_cpu_unavailable()
  if reason:
    pytest.skip(reason)
  multi, single = str(tmp_path / 'multi'), str(tmp_path / 'single')

  # Two processes x 2 devices for 20 steps, beside one process x 4 devices for 30 steps.
  procs = _run_distributed(multi, 20, _free_port())
  procs.append(_launch(single, 30, _env(4)))
  out = _wait_all(procs, ['process 0', 'process 1', 'single process'])
  assert 'done: step 20' in out['process 0'] and 'done: step 20' in out['process 1']

  want = _losses(single)
  _assert_same_losses(_losses(multi), want, [5, 10, 15, 20])
  # Process 0 alone wrote the run's files and took the lock.
  with open(os.path.join(multi, 'config.json')) as f:
    assert json.load(f)['train']['distributed'] is True
  assert 'model:' in out['process 0'] and 'model:' not in out['process 1']
  # The mesh spans both processes (each has 2 devices), not two independent copies of the run.
  assert 'devices: 4' in out['process 0'], out['process 0'][-2000:]
  assert sorted(os.listdir(os.path.join(multi, 'checkpoints'))) == ['10', '20']

  # Both processes resume from the shared checkpoint at step 20 and extend the run to 30.
  procs = _run_distributed(multi, 30, _free_port())
  out = _wait_all(procs, ['resumed process 0', 'resumed process 1'])
  for name in ('resumed process 0', 'resumed process 1'):
    assert 'resumed from checkpoint at step 20' in out[name], out[name][-2000:]
  _assert_same_losses(_losses(multi), want, [5, 10, 15, 20, 25, 30])

  # The multi-process checkpoint restores in one process (as eval.py does) to a model whose
  # predictions are the single run's. (Parameters are not compared one by one: the attention
  # key bias gets a zero gradient up to rounding, so Adam turns rounding noise into updates
  # that move it differently with the reduction order, without changing any output.)
  import jax
  from training.loop import restore_run, seed_model
  got = restore_run(multi, log=lambda _: None)
  ref = restore_run(single, log=lambda _: None)
  assert got['step'] == ref['step'] == 30
  task = ref['setup'].task
  inputs = task.model_inputs(task.sample(jax.random.key(7), 64, 30))
  np.testing.assert_allclose(np.asarray(seed_model(got, 0)(inputs)),
                             np.asarray(seed_model(ref, 0)(inputs)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('env, match', [
    ({'JAX_NUM_PROCESSES': 'two'}, "JAX_NUM_PROCESSES='two' must be an integer"),
    ({'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': '2',
      'JAX_COORDINATOR_ADDRESS': '127.0.0.1:1'}, r'JAX_PROCESS_ID=2 must be in \[0'),
    ({'JAX_COORDINATOR_ADDRESS': 'localhost'}, 'must be host:port'),
])
def test_bad_distributed_environment_is_one_line(tmp_path, env, match):
  import re
  result = subprocess.run(
      [sys.executable, 'train.py', *FLAGS, f'--workdir={tmp_path / "w"}',
       '--config.train.num_steps=5', '--config.train.distributed=True'],
      cwd=ROOT, env=_env(1, **env), capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and re.search(match, lines[0]), result.stderr[-2000:]
  assert not os.path.exists(tmp_path / 'w')
