"""Checkpoint integrity and retention, work-directory lock, metrics reading, error messages.

The checkpoints are real orbax checkpoints of a small train-state pytree; damage is done to
the files orbax actually writes (see training/checkpoint.py for the layout).
"""
import errno
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from runlib.checkpoint import CheckpointDamagedError, Checkpointer
from training.workdir import (WorkdirError, WorkdirLock, check_writable_dir, describe_os_error,
                              find_os_error, read_metrics)

# When one array read fails, orbax abandons the other reads' coroutines; their exceptions reach
# the garbage collector (and an event-loop callback), possibly during a later test, which
# pytest reports as warnings. They are orbax's noise about damage these tests make on purpose.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_state(seed, sharding=None):
  key = jax.random.key(seed)
  state = {'params': {'w': jax.random.normal(key, (64, 64)),      # 16 KB: a data file > 4 KB
                      'b': jnp.full((8,), float(seed))},
           'opt_state': ({'mu': jnp.zeros((8,)) + seed}, {}, None),
           'step': jnp.asarray(seed, jnp.int32)}
  if sharding is not None:
    state = jax.device_put(state, sharding)
  return state


def assert_same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def save_steps(directory, steps, keep=5, **kwargs):
  ckpt = Checkpointer(directory, keep=keep, **kwargs)
  for step in steps:
    ckpt.save(step, make_state(step))
  ckpt.close()
  return Checkpointer(directory, keep=keep, **kwargs)


def largest_data_file(step_dir):
  files = glob.glob(os.path.join(step_dir, 'state', 'ocdbt.process_*', 'd', '*'))
  return max(files, key=os.path.getsize)


# ----------------------------------------------------------------------------- checkpoints


def test_layout_and_round_trip_with_digests(tmp_path):
  ckpt = save_steps(str(tmp_path), [10, 20])
  step_dir = os.path.join(str(tmp_path), '20')
  # What orbax writes (the damage tests below rely on it).
  for rel in ('_CHECKPOINT_METADATA', 'state/_METADATA', 'state/manifest.ocdbt',
              'digests/metadata'):
    assert os.path.getsize(os.path.join(step_dir, rel)) > 0, rel
  assert os.path.getsize(largest_data_file(step_dir)) > 8192
  digests = json.load(open(os.path.join(step_dir, 'digests', 'metadata')))
  assert set(digests['leaves']) == {"['params']['w']", "['params']['b']",
                                    "['opt_state'][0]['mu']", "['step']"}
  logs = []
  step, state = ckpt.restore_latest_intact(make_state(0), log=logs.append)
  assert step == 20 and logs == []
  assert_same(state, make_state(20))
  assert_same(ckpt.restore(10, make_state(0)), make_state(10))
  ckpt.close()


def test_restore_honours_abstract_sharding_and_dtype(tmp_path):
  mesh = Mesh(np.array(jax.devices()), ('data',))
  replicated = NamedSharding(mesh, P())
  ckpt = Checkpointer(str(tmp_path), keep=2)
  ckpt.save(5, make_state(5, replicated))
  ckpt.wait()
  split = NamedSharding(mesh, P('data'))
  abstract = make_state(0, replicated)
  abstract['params']['w'] = jax.ShapeDtypeStruct((64, 64), jnp.float32, sharding=split)
  abstract['opt_state'][0]['mu'] = jax.ShapeDtypeStruct((8,), jnp.bfloat16, sharding=split)
  step, state = ckpt.restore_latest_intact(abstract)
  assert step == 5
  assert state['params']['w'].sharding == split
  assert state['params']['b'].sharding == replicated
  assert state['opt_state'][0]['mu'].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(state['params']['w']),
                                np.asarray(make_state(5)['params']['w']))
  ckpt.close()


def test_overwritten_data_block_falls_back_to_previous_step(tmp_path):
  ckpt = save_steps(str(tmp_path), [10, 20])
  path = largest_data_file(os.path.join(str(tmp_path), '20'))
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:
    f.seek(size // 2 - 2048)
    f.write(np.random.default_rng(0).bytes(4096))
  logs = []
  step, state = ckpt.restore_latest_intact(make_state(0), log=logs.append)
  assert step == 10
  assert_same(state, make_state(10))
  assert len(logs) == 1 and logs[0].startswith('skipped checkpoint 20: ') and '\n' not in logs[0]
  with pytest.raises(CheckpointDamagedError) as info:
    ckpt.restore_intact(20, make_state(0))
  assert info.value.step == 20
  ckpt.close()


@pytest.mark.parametrize('damage', ['truncate_data', 'delete_data', 'empty_tree_metadata',
                                    'empty_checkpoint_metadata', 'corrupt_json_metadata',
                                    'empty_manifest', 'missing_digest', 'empty_digest'])
def test_damaged_newest_checkpoint_is_skipped(tmp_path, damage):
  ckpt = save_steps(str(tmp_path), [10, 20, 30])
  step_dir = os.path.join(str(tmp_path), '30')
  if damage == 'truncate_data':
    path = largest_data_file(step_dir)
    os.truncate(path, os.path.getsize(path) // 2)
  elif damage == 'delete_data':
    os.remove(largest_data_file(step_dir))
  elif damage == 'empty_tree_metadata':
    open(os.path.join(step_dir, 'state', '_METADATA'), 'w').close()
  elif damage == 'empty_checkpoint_metadata':
    open(os.path.join(step_dir, '_CHECKPOINT_METADATA'), 'w').close()
  elif damage == 'corrupt_json_metadata':
    with open(os.path.join(step_dir, 'state', '_METADATA'), 'r+b') as f:
      f.truncate(os.path.getsize(f.name) // 2)
  elif damage == 'empty_manifest':
    open(os.path.join(step_dir, 'state', 'manifest.ocdbt'), 'w').close()
  elif damage == 'missing_digest':
    os.remove(os.path.join(step_dir, 'digests', 'metadata'))
  elif damage == 'empty_digest':
    open(os.path.join(step_dir, 'digests', 'metadata'), 'w').close()
  logs = []
  step, state = ckpt.restore_latest_intact(make_state(0), log=logs.append)
  assert step == 20, logs
  assert_same(state, make_state(20))
  assert len(logs) == 1 and logs[0].startswith('skipped checkpoint 30: '), logs
  if damage == 'missing_digest':
    assert 'no digest' in logs[0]
  ckpt.close()


def test_data_not_matching_digest_is_detected(tmp_path):
  """Well-formed data that is not what was saved (here: step 10's arrays under step 20)."""
  ckpt = save_steps(str(tmp_path), [10, 20])
  for name in os.listdir(os.path.join(str(tmp_path), '20', 'state')):
    os.rename(os.path.join(str(tmp_path), '20', 'state', name),
              os.path.join(str(tmp_path), name + '.old'))
  for name in os.listdir(os.path.join(str(tmp_path), '10', 'state')):
    src = os.path.join(str(tmp_path), '10', 'state', name)
    dst = os.path.join(str(tmp_path), '20', 'state', name)
    (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, dst)
  with pytest.raises(CheckpointDamagedError, match='does not match its sha256 digest'):
    ckpt.restore_intact(20, make_state(0))
  logs = []
  assert ckpt.restore_latest_intact(make_state(0), log=logs.append)[0] == 10
  assert 'does not match' in logs[0]
  ckpt.close()


def test_all_damaged_gives_none_and_max_step(tmp_path):
  ckpt = save_steps(str(tmp_path), [10, 20])
  assert ckpt.restore_latest_intact(make_state(0), log=lambda _: None, max_step=15)[0] == 10
  assert ckpt.restore_latest_intact(make_state(0), max_step=5) == (None, None)
  for step in (10, 20):
    os.remove(os.path.join(str(tmp_path), str(step), 'digests', 'metadata'))
  logs = []
  assert ckpt.restore_latest_intact(make_state(0), log=logs.append) == (None, None)
  assert [line.split(':')[0] for line in logs] == ['skipped checkpoint 20', 'skipped checkpoint 10']
  with pytest.raises(FileNotFoundError):
    ckpt.restore_intact(30, make_state(0))
  ckpt.close()
  empty = Checkpointer(str(tmp_path / 'none'), keep=2)
  assert empty.restore_latest_intact(make_state(0)) == (None, None)
  empty.close()


def test_different_model_is_not_reported_as_damage(tmp_path):
  ckpt = save_steps(str(tmp_path), [10])
  other = make_state(0)
  other['params']['w'] = jnp.zeros((32, 64))
  with pytest.raises(ValueError, match='shape'):
    ckpt.restore_intact(10, other)
  other = make_state(0)
  other['params']['extra'] = jnp.zeros((2,))
  with pytest.raises(ValueError, match='different state'):
    ckpt.restore_intact(10, other)
  ckpt.close()


def test_unfinished_save_is_not_listed_and_resave_replaces(tmp_path):
  ckpt = save_steps(str(tmp_path), [10, 20])
  ckpt.close()
  # A save killed half-way leaves only orbax's temporary directory.
  shutil.copytree(os.path.join(str(tmp_path), '20'),
                  os.path.join(str(tmp_path), '30.orbax-checkpoint-tmp'))
  os.remove(os.path.join(str(tmp_path), '30.orbax-checkpoint-tmp', 'digests', 'metadata'))
  ckpt = Checkpointer(str(tmp_path), keep=5)
  assert ckpt.all_steps() == [10, 20]
  # Resuming from 10 past a damaged 20 saves 20 again: the old directory is replaced.
  os.remove(largest_data_file(os.path.join(str(tmp_path), '20')))
  assert ckpt.restore_latest_intact(make_state(0), log=lambda _: None)[0] == 10
  ckpt.save(20, make_state(21))
  ckpt.wait()
  assert ckpt.restore_latest_intact(make_state(0))[0] == 20
  assert_same(ckpt.restore(20, make_state(0)), make_state(21))
  ckpt.close()


@pytest.mark.parametrize('keep_steps', [lambda s: s in (10, 40), {10, 40}])
def test_keep_steps_are_preserved_besides_last_k(tmp_path, keep_steps):
  ckpt = Checkpointer(str(tmp_path), keep=2, keep_steps=keep_steps)
  for step in range(10, 110, 10):
    ckpt.save(step, make_state(step))
  ckpt.wait()
  assert ckpt.all_steps() == [10, 40, 90, 100]
  assert sorted(int(n) for n in os.listdir(str(tmp_path)) if n.isdigit()) == [10, 40, 90, 100]
  ckpt.close()
  reader = Checkpointer(str(tmp_path), keep=1, read_only=True)
  assert reader.all_steps() == [10, 40, 90, 100]     # read-only never deletes
  assert_same(reader.restore_intact(40, make_state(0)), make_state(40))
  reader.close()


# ----------------------------------------------------------------------------- lock

HOLDER = textwrap.dedent('''
  import sys, time
  sys.path.insert(0, {repo!r})
  from training.workdir import WorkdirLock
  lock = WorkdirLock({workdir!r}).acquire()
  print('locked', flush=True)
  time.sleep(60)
''')


def start_holder(workdir):
  proc = subprocess.Popen([sys.executable, '-c', HOLDER.format(repo=REPO, workdir=workdir)],
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == 'locked'
  return proc


def test_lock_is_exclusive_across_processes_and_dies_with_holder(tmp_path):
  workdir = str(tmp_path / 'run')
  proc = start_holder(workdir)
  try:
    with pytest.raises(WorkdirError) as info:
      WorkdirLock(workdir).acquire()
    message = str(info.value)
    assert f'pid {proc.pid} on host ' in message and 'in use by another training' in message
    assert '\n' not in message
  finally:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
  # The lock file stays behind, but a dead process holds no flock.
  assert os.path.exists(os.path.join(workdir, '.lock'))
  with WorkdirLock(workdir) as lock:
    assert lock.held
    assert open(os.path.join(workdir, '.lock')).read().split()[0] == str(os.getpid())
  assert not lock.held
  with WorkdirLock(workdir):    # released on exit: can be taken again
    pass


def test_lock_released_when_body_raises(tmp_path):
  workdir = str(tmp_path)
  with pytest.raises(KeyError):
    with WorkdirLock(workdir):
      with pytest.raises(WorkdirError):
        WorkdirLock(workdir).acquire()     # a second open file is refused, even in-process
      raise KeyError('boom')
  lock = WorkdirLock(workdir).acquire()
  lock.release()
  lock.release()     # idempotent


# ----------------------------------------------------------------------------- metrics


def write_lines(path, lines):
  with open(path, 'w') as f:
    f.write(''.join(lines))


def test_read_metrics_drops_broken_last_line(tmp_path):
  path = str(tmp_path / 'metrics.jsonl')
  write_lines(path, [json.dumps({'step': s, 'loss': 1.0 / s}) + '\n' for s in (10, 20, 30)]
              + ['{"step": 40, "lo'])
  warnings = []
  rows = read_metrics(path, warn=warnings.append)
  assert [r['step'] for r in rows] == [10, 20, 30]
  assert len(warnings) == 1 and 'line 4' in warnings[0] and path in warnings[0]
  assert [r['step'] for r in read_metrics(path, up_to_step=20, warn=lambda _: None)] == [10, 20]
  assert read_metrics(str(tmp_path / 'missing.jsonl')) == []
  # NUL bytes left by a crash on some file systems are a broken tail too.
  write_lines(path, ['{"step": 10}\n', '\0' * 10 + '{"st\n', '\n'])
  warnings = []
  assert read_metrics(path, warn=warnings.append) == [{'step': 10}]
  assert 'line 2' in warnings[0]


def test_read_metrics_refuses_broken_middle_line(tmp_path):
  path = str(tmp_path / 'metrics.jsonl')
  write_lines(path, ['{"step": 10}\n', '{"step": 2\n', '{"step": 30}\n'])
  with pytest.raises(WorkdirError, match='line 2'):
    read_metrics(path, warn=lambda _: None)


# ----------------------------------------------------------------------------- errors


def test_describe_os_error():
  error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/w/checkpoints/40')
  assert describe_os_error(error, 'writing checkpoint 40') == (
      'writing checkpoint 40 failed at /w/checkpoints/40: No space left on device')
  assert describe_os_error(PermissionError(errno.EACCES, 'Permission denied'), 'saving') == (
      'saving failed: Permission denied')
  try:
    try:
      raise error
    except OSError as e:
      raise RuntimeError('async save failed') from e
  except RuntimeError as wrapped:
    assert find_os_error(wrapped) is error
  assert find_os_error(ValueError('x')) is None


def test_check_writable_dir(tmp_path, monkeypatch):
  check_writable_dir(str(tmp_path))
  check_writable_dir(str(tmp_path / 'new' / 'deeper'))
  a_file = tmp_path / 'file'
  a_file.write_text('x')
  with pytest.raises(WorkdirError, match='not a directory'):
    check_writable_dir(str(a_file))
  with pytest.raises(WorkdirError, match='not a directory'):
    check_writable_dir(str(a_file / 'sub'))
  read_only = tmp_path / 'ro'
  read_only.mkdir()
  read_only.chmod(0o555)
  try:
    if os.access(str(read_only), os.W_OK):
      # Running as root: permission bits do not stop root's writes, so os.access (rightly)
      # says writable; the refusal is checked below with os.access patched instead.
      pass
    else:
      with pytest.raises(WorkdirError, match='not writable'):
        check_writable_dir(str(read_only))
      with pytest.raises(WorkdirError, match='not writable'):
        check_writable_dir(str(read_only / 'run'))
  finally:
    read_only.chmod(0o755)
  monkeypatch.setattr(os, 'access', lambda path, mode: False)
  with pytest.raises(WorkdirError, match='not writable'):
    check_writable_dir(str(tmp_path))
  with pytest.raises(WorkdirError, match='not writable'):
    check_writable_dir(str(tmp_path / 'run'))
