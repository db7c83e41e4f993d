"""Faults a real run survives: a damaged latest checkpoint, a broken metrics tail, a full disk,
a second training into the same work directory, a work directory that is a file."""
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.test_hardening_files import largest_data_file
from tests.test_training import losses, params_of, tiny_config
from training.loop import restore_model, train
from training.workdir import WorkdirError

ONE = jax.devices()[:1]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


def damage(path, offset=None, size=4096):
  with open(path, 'r+b') as f:
    length = os.path.getsize(path)
    f.seek(offset if offset is not None else max(length // 2 - size // 2, 0))
    f.write(os.urandom(min(size, length)))


def test_damaged_latest_checkpoint_falls_back_for_resume_and_eval(tmp_path):
  workdir = str(tmp_path / 'run')
  full = train(tiny_config(30), str(tmp_path / 'full'), devices=ONE, log=lambda s: None)
  train(tiny_config(30), workdir, devices=ONE, log=lambda s: None, stop_after=20)
  damage(largest_data_file(os.path.join(workdir, 'checkpoints', '20')))
  messages = []
  _, _, _, step = restore_model(workdir)   # eval's path: skips 20, uses 10
  assert step == 10
  resumed = train(tiny_config(30), workdir, devices=ONE, log=messages.append)
  assert any(m.startswith('skipped checkpoint 20') for m in messages), messages
  assert any('resumed from checkpoint at step 10' in m for m in messages)
  for a, b in zip(params_of(full), params_of(resumed)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert losses(workdir) == pytest.approx(losses(tmp_path / 'full'), rel=1e-5)


def test_broken_metrics_tail_is_dropped_on_resume(tmp_path):
  workdir = str(tmp_path / 'run')
  train(tiny_config(20), workdir, devices=ONE, log=lambda s: None, stop_after=10)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 15, "loss": 0.3')          # a crash in the middle of a write
  messages = []
  train(tiny_config(20), workdir, devices=ONE, log=messages.append)
  assert any('metrics.jsonl' in m and 'line' in m for m in messages), messages
  steps = [json.loads(l)['step'] for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert steps == [5, 10, 15, 20]


def test_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
  from runlib import checkpoint
  workdir = str(tmp_path / 'run')
  original = checkpoint.Checkpointer.save

  def save(self, step, state):
    if step >= 20:
      raise OSError(28, 'No space left on device', os.path.join(self.directory, str(step)))
    return original(self, step, state)

  monkeypatch.setattr(checkpoint.Checkpointer, 'save', save)
  with pytest.raises(WorkdirError) as error:
    train(tiny_config(30), workdir, devices=ONE, log=lambda s: None)
  message = str(error.value)
  assert len(message.splitlines()) == 1
  assert 'No space left on device' in message and 'checkpoints/20' in message
  monkeypatch.undo()
  _, _, _, step = restore_model(workdir)
  assert step == 10


def test_second_training_into_a_locked_workdir_is_refused(tmp_path):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; sys.path.insert(0, sys.argv[1]); '
       'from training.workdir import WorkdirLock; l = WorkdirLock(sys.argv[2]); l.acquire(); '
       'print("held", flush=True); time.sleep(60)', ROOT, workdir],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(WorkdirError, match=f'in use by another training \\(pid {holder.pid}'):
      train(tiny_config(10), workdir, devices=ONE, log=lambda s: None)
    assert not os.path.exists(os.path.join(workdir, 'metrics.jsonl'))
  finally:
    holder.kill()
    holder.wait()
  train(tiny_config(10), workdir, devices=ONE, log=lambda s: None)   # a dead holder: no lock


def test_workdir_that_is_a_file_is_refused(tmp_path):
  path = tmp_path / 'file'
  path.write_text('precious')
  with pytest.raises(WorkdirError, match='file'):
    train(tiny_config(10), str(path), devices=ONE, log=lambda s: None)
  assert path.read_text() == 'precious'
