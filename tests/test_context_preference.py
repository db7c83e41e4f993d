"""Preferring in-context answers (training/context_preference.py): the two answers of a
label-permuted prompt, the loss against a NumPy DPO, the exact KL, and training that raises
the in-context answer's margin while the reference stays frozen."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.bursty_classification import get_config as bursty_config
from configs.context_preference import get_config as context_config
from training.loop import train

ONE = jax.devices()[:1]
quiet = lambda s: None
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


def shrink(config, steps):
  config.task.update(dict(num_classes=64, num_labels=8, num_context=4, n_dims=8,
                          burstiness=2, num_novel_classes=8, p_bursty=0.0))
  config.model.update(dict(num_layers=1, d_model=16, num_heads=2))
  config.train.update(dict(num_steps=steps, batch_size=16, steps_per_call=5,
                           checkpoint_every=5, log_every=5, progress=False,
                           keep_log_checkpoints=0))
  config.eval.update(dict(num_log_evals=0, every=0))
  return config


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('iw') / 'run')
  train(shrink(bursty_config('tiny'), 40), workdir, devices=ONE, log=quiet)
  return workdir


def dpo_config(source, steps=10, **objective):
  config = shrink(context_config('tiny'), steps)
  config.train.init_from = source
  config.objective.update({'eval_prompts': 64, **objective})
  return config


def test_answers_and_loss_against_numpy(source):
  from flax import nnx
  from training.context_preference import SPLIT, answers
  from training.setup import make_setup
  setup = make_setup(dpo_config(source, beta=0.5), ONE)
  task = setup.task
  weights = task.sample_split(jax.random.key(0), 256, 'in_weights')
  np.testing.assert_array_equal(weights['query_label_B'],
                                weights['query_class_B'] % task.num_labels)
  graphdef, params, rest = nnx.split(setup.model, nnx.Param, ...)
  policy = nnx.merge(graphdef, jax.tree.map(lambda x: 3.0 * x, params), rest)
  batch = task.sample(jax.random.key(1), 32)
  key = jax.random.key(2)
  value, metrics = setup.loss(policy, setup.model, batch, key)
  prompts = task.sample_split(key, 32, SPLIT)
  ic, iw, valid = (np.asarray(x) for x in answers(task, prompts))
  assert 0 < valid.sum() < 32 and np.all((ic != iw) == (valid == 1))
  log_softmax = lambda m: np.asarray(jax.nn.log_softmax(
      m(task.model_inputs(prompts))[:, -1], -1), np.float64)
  lp, ref = log_softmax(policy), log_softmax(setup.model)
  rows = np.arange(32)
  h = (lp[rows, ic] - ref[rows, ic]) - (lp[rows, iw] - ref[rows, iw])
  losses = np.log1p(np.exp(-0.5 * h))
  assert float(value) == pytest.approx(np.sum(losses * valid) / valid.sum(), rel=1e-4)
  kl = np.mean(np.sum(np.exp(lp) * (lp - ref), -1))
  assert float(metrics['kl']) == pytest.approx(kl, rel=1e-4) and kl > 0.005


def test_training_raises_the_in_context_margin(source, tmp_path):
  workdir = str(tmp_path / 'dpo')
  config = dpo_config(source, steps=30, beta=0.5)
  config.train.learning_rate = 3e-3
  config.eval.every = 30
  train(config, workdir, devices=ONE, log=quiet)
  rows = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  evals = [r for r in rows if r.get('kind') == 'eval']
  assert evals[0]['step'] == 0 and evals[0]['eval/kl'] == pytest.approx(0.0, abs=1e-5)
  assert evals[-1]['eval/ic_logp_margin'] > evals[0]['eval/ic_logp_margin'] + 0.1
  assert evals[-1]['eval/kl'] > 0
  assert 'eval/in_context_accuracy' in evals[-1]
