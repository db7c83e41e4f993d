"""Kirsch et al.'s task family (data/meta_classification.py): the pool of M tasks, unseen tasks,
the per-task projection and label permutation, the nearest-neighbour baseline, a tiny run."""
import json
import os

import jax
import numpy as np
import pytest

from core import ConfigError
from data.base import TASKS

B, N, D, L = 256, 6, 5, 4


def make(**overrides):
  config = dict(TASKS['meta_classification'].default_config())
  config.update(num_context=N, n_dims=D, num_labels=L, name='meta_classification')
  config.update(overrides)
  return TASKS['meta_classification'](config)


def draw(task, split='in_distribution', seed=0):
  return jax.tree.map(np.asarray, jax.jit(lambda k: task.sample_split(k, B, split))(
      jax.random.key(seed)))


def test_pool_of_m_tasks_and_disjoint_unseen_tasks():
  task = make(num_tasks=7)
  seen = np.concatenate([draw(task, seed=s)['task_B'] for s in range(4)])
  assert set(seen.tolist()) == set(range(7))        # 1,024 draws cover a pool of 7
  unseen = draw(task, 'in_context')['task_B']
  assert unseen.min() >= (1 << 30) and len(set(unseen.tolist())) > B - 2
  fresh = draw(make(num_tasks=0))['task_B']
  assert fresh.max() < (1 << 30) and len(set(fresh.tolist())) > B - 2


def test_examples_follow_their_task_projection_and_permutation():
  task = make(num_tasks=3, epsilon=0.0)     # epsilon 0: every base item is its class centre
  batch = draw(task)
  projection, permutation = jax.tree.map(np.asarray,
                                         task.task_parameters(jax.numpy.asarray(batch['task_B'])))
  centres = np.asarray(task._centres_LxD)
  expected = np.einsum('bed,bnd->bne', projection, centres[batch['classes_BxN']])
  np.testing.assert_allclose(batch['items_BxNxD'], expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(batch['labels_BxN'],
                                np.take_along_axis(permutation, batch['classes_BxN'], 1))
  for p in permutation:                     # each task's label map is a bijection
    assert sorted(p.tolist()) == list(range(L))
  # The same task index always gives the same projection and permutation.
  again = jax.tree.map(np.asarray, task.task_parameters(jax.numpy.asarray([1, 1])))
  np.testing.assert_array_equal(again[0][0], again[0][1])
  # Different tasks differ: labels of one class differ across tasks for some class.
  maps = {tuple(p) for p in permutation}
  assert len(maps) == 3


def test_layout_targets_and_determinism():
  task = make(num_tasks=5)
  batch = draw(task)
  inputs = np.asarray(task.model_inputs(batch))
  assert inputs.shape == (B, 2 * N - 1, D + L)
  np.testing.assert_array_equal(inputs[:, 0::2, :D], batch['items_BxNxD'])
  np.testing.assert_array_equal(inputs[:, 1::2, D:].argmax(-1), batch['labels_BxN'][:, :-1])
  np.testing.assert_array_equal(batch['targets_BxT'][:, 0::2], batch['labels_BxN'])
  assert (batch['target_mask_BxT'][:, 0::2] == 1).all() and (batch['target_mask_BxT'][:, 1::2] == 0).all()
  np.testing.assert_array_equal(draw(task, seed=3)['items_BxNxD'], draw(task, seed=3)['items_BxNxD'])


def test_context_nearest_neighbour_against_brute_force():
  task = make(num_tasks=0, epsilon=0.8)
  batch = draw(task)
  got = np.asarray(task.baseline_scores(batch)['context_nn'])
  items, labels = batch['items_BxNxD'], batch['labels_BxN']
  for b in range(32):
    for i in range(N):
      if i == 0:
        assert got[b, i] == pytest.approx(1 / L)
        continue
      j = np.argmin(((items[b, :i] - items[b, i]) ** 2).sum(-1))
      assert got[b, i] == float(labels[b, j] == labels[b, i])


@pytest.mark.parametrize('key, value, match', [
    ('num_tasks', -1, 'task.num_tasks'), ('num_labels', 1, 'task.num_labels'),
    ('epsilon', float('nan'), 'task.epsilon'), ('bogus', 1, 'not a key')])
def test_bad_config(key, value, match):
  with pytest.raises(ConfigError, match=match):
    make(**{key: value})


def test_tiny_run_reports_seen_and_unseen_tasks(tmp_path):
  from analysis import classification_eval
  from analysis.base import make_model_fns
  from configs.meta_classification import get_config
  from training.loop import restore_model, train
  config = get_config('tiny')
  config.task.update(num_context=N, n_dims=D, num_labels=L, num_tasks=4)
  config.model.num_layers, config.model.d_model = 1, 32
  config.train.update(dict(num_steps=10, batch_size=16, steps_per_call=5, log_every=5,
                           checkpoint_every=10, warmup_steps=2, progress=False,
                           keep_log_checkpoints=0))
  config.eval.num_log_evals = 1
  config.eval.train_prompts = 32
  workdir = str(tmp_path / 'run')
  train(config, workdir, devices=jax.devices()[:1], log=lambda s: None)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    evals = [json.loads(line) for line in f if '"eval"' in line]
  assert 0 <= evals[0]['eval/in_context_accuracy'] <= 1
  assert 0 <= evals[0]['eval/in_distribution_accuracy'] <= 1
  _, task, model, _ = restore_model(workdir)
  out = classification_eval.run_suite('in_context', make_model_fns(model, task), task, config,
                                      num_prompts=40, seed=0, batch_size=16)
  assert out['num_queries'] == N
  assert out['metrics']['chance']['accuracy']['mean'] == pytest.approx(1 / L)
  assert 'skipped' in classification_eval.run_suite('in_weights', make_model_fns(model, task),
                                                     task, config, num_prompts=8, seed=0,
                                                     batch_size=8)
