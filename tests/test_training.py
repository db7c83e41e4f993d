"""The train loop: sharding invariance, resumption, non-finite stops, workdir safety, CLI errors."""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.linear_regression import get_config
from data.base import ConfigError, register_task, TASKS
from data.regression import LinearRegression
from training.loop import (NonFiniteLossError, WorkdirError, restore_model, train)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(num_steps=20, **train):
  config = get_config('tiny')
  config.task.n_dims, config.task.n_points = 4, 8
  config.model.num_layers, config.model.d_model = 2, 32
  config.train.update(dict(num_steps=num_steps, batch_size=16, steps_per_call=5, log_every=5,
                           checkpoint_every=10, warmup_steps=5, progress=False,
                           keep_log_checkpoints=0))
  config.eval.num_log_evals = 0
  config.train.update(train)
  return config


def losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return [row['loss'] for row in rows if row.get('kind', 'train') == 'train']


def params_of(result, seed_index=0):
  return [x[seed_index] for x in jax.tree.leaves(jax.device_get(result['state']['params']))]


def test_eight_devices_match_one(tmp_path):
  assert jax.device_count() == 8
  r1 = train(tiny_config(), str(tmp_path / 'one'), devices=jax.devices()[:1], log=lambda s: None)
  r8 = train(tiny_config(), str(tmp_path / 'eight'), devices=jax.devices(), log=lambda s: None)
  np.testing.assert_allclose(losses(tmp_path / 'one'), losses(tmp_path / 'eight'), rtol=1e-4)
  # Adam divides by sqrt(second moment): near-zero gradients turn float reduction-order noise
  # into ~1e-5 parameter differences, far below the 20 steps x lr 1e-3 the params moved.
  for a, b in zip(params_of(r1), params_of(r8)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-4)
  # the run really trained: the loss moved
  assert losses(tmp_path / 'one')[-1] != losses(tmp_path / 'one')[0]


def test_resume_reaches_same_parameters(tmp_path):
  devices = jax.devices()[:2]
  full = train(tiny_config(30), str(tmp_path / 'full'), devices=devices, log=lambda s: None)
  part = train(tiny_config(30), str(tmp_path / 'part'), devices=devices, log=lambda s: None,
               stop_after=20)
  assert part['step'] == 20
  messages = []
  resumed = train(tiny_config(30), str(tmp_path / 'part'), devices=devices, log=messages.append)
  assert any('resumed from checkpoint at step 20' in m for m in messages)
  assert resumed['step'] == 30
  for a, b in zip(params_of(full), params_of(resumed)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert losses(tmp_path / 'part') == pytest.approx(losses(tmp_path / 'full'), rel=1e-5)


class _NanAfter(LinearRegression):
  """Linear regression whose labels turn NaN from step 25 on."""

  def sample(self, key, batch_size, step=0):
    batch = super().sample(key, batch_size, step)
    bad = jnp.where(step >= 25, jnp.nan, 0.0)
    return {**batch, 'ys_BxN': batch['ys_BxN'] + bad}


if 'nan_after_25' not in TASKS:
  register_task('nan_after_25')(_NanAfter)


def test_non_finite_loss_stops_without_overwriting(tmp_path):
  config = tiny_config(40)
  config.task.name = 'nan_after_25'
  workdir = str(tmp_path / 'nan')
  with pytest.raises(NonFiniteLossError, match='step 26.*last good checkpoint: step 20'):
    train(config, workdir, devices=jax.devices()[:1], log=lambda s: None)
  _, _, model, step = restore_model(workdir)
  assert step == 20
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jax.device_get(
      __import__('flax').nnx.state(model))))


def test_incomplete_checkpoint_is_skipped(tmp_path):
  workdir = str(tmp_path / 'run')
  train(tiny_config(20), workdir, devices=jax.devices()[:1], log=lambda s: None)
  ckpt = os.path.join(workdir, 'checkpoints')
  # A save killed half-way: orbax's temporary directory for step 30, never renamed.
  shutil.copytree(os.path.join(ckpt, '20'), os.path.join(ckpt, '30.orbax-checkpoint-tmp-1'))
  _, _, _, step = restore_model(workdir)
  assert step == 20
  # Resuming with more steps also starts from 20, and then saves 30 properly.
  messages = []
  train(tiny_config(30), workdir, devices=jax.devices()[:1], log=messages.append)
  assert any('step 20' in m for m in messages)
  _, _, _, step = restore_model(workdir)
  assert step == 30


def test_workdir_with_other_config_is_refused(tmp_path):
  workdir = str(tmp_path / 'run')
  train(tiny_config(10), workdir, devices=jax.devices()[:1], log=lambda s: None)
  before = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  other = tiny_config(10)
  other.model.d_model = 64
  with pytest.raises(WorkdirError, match='model.d_model: 32 -> 64.*--overwrite'):
    train(other, workdir, devices=jax.devices()[:1], log=lambda s: None)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == before
  train(other, workdir, devices=jax.devices()[:1], log=lambda s: None, overwrite=True)
  config, _, model, _ = restore_model(workdir)
  assert config.model.d_model == 64


@pytest.mark.parametrize('key,value,match', [
    ('train.batch_size', 12, 'divisible by the number of devices'),
    ('train.num_steps', 0, 'train.num_steps'),
    ('train.checkpoint_every', 7, 'multiple of train.steps_per_call'),
    ('task.n_dims', 0, 'task.n_dims'),
    ('model.max_len', 10, 'needs 16 positions'),
    ('train.schedule', 'linear', 'cosine, constant'),
])
def test_bad_config_is_rejected_before_anything_is_written(tmp_path, key, value, match):
  config = tiny_config()
  section, name = key.split('.')
  config[section][name] = value
  with pytest.raises(ConfigError, match=match):
    train(config, str(tmp_path / 'bad'), devices=jax.devices(), log=lambda s: None)
  assert not os.path.exists(tmp_path / 'bad')


def _cli(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        env=env, timeout=300)


@pytest.mark.parametrize('args,match', [
    (['--config.task.bogus=1'], "config key 'task.bogus' is unknown: keys under task are"),
    (['--config.task.n_dims=abc'], "config.task.n_dims='abc' is invalid"),
    (['--config.task.n_dims=0'], 'config.task.n_dims=0 is invalid'),
    (['--config.model.mixer=foo'], "unknown mixer 'foo'; known:"),
    (['--config.task.n_points=100', '--config.model.max_len=64'], 'needs 200 positions'),
])
def test_cli_errors_are_one_line(tmp_path, args, match):
  result = _cli('train.py', '--config', 'configs/linear_regression.py:tiny', '--workdir',
                str(tmp_path / 'w'), *args)
  assert result.returncode != 0
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr[-2000:]
  assert match in lines[0]
  assert not os.path.exists(tmp_path / 'w')


def test_cli_requires_workdir():
  result = _cli('train.py', '--config', 'configs/linear_regression.py:tiny')
  assert result.returncode != 0 and '--workdir is required' in result.stderr
