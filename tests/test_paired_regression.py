"""paired_linear_regression: one token per example, the query masks, and bad options."""
import jax
import numpy as np
import pytest

from data import get_task
from core import ConfigError


def _task(**overrides):
  return get_task({'name': 'paired_linear_regression', 'n_dims': 3, 'n_points': 5,
                   **overrides})


def test_tokens_hold_each_example_whole_after_its_query():
  task = _task()
  batch = task.sample(jax.random.key(0), 2)
  features = np.asarray(task.model_inputs(batch))
  xs, ys = np.asarray(batch['xs_BxNxD']), np.asarray(batch['ys_BxN'])
  assert features.shape == (2, 10, 5) and task.io().input_dim == 5 and task.io().seq_len == 10
  np.testing.assert_array_equal(features[:, 0::2, :3], xs)          # queries: x_i, 0, 0
  np.testing.assert_array_equal(features[:, 0::2, 3:], 0.0)
  np.testing.assert_array_equal(features[:, 1::2, :3], xs)          # examples: x_i, y_i, 1
  np.testing.assert_array_equal(features[:, 1::2, 3], ys)
  np.testing.assert_array_equal(features[:, 1::2, 4], 1.0)


def test_loss_at_last_scores_only_the_final_query():
  last = np.asarray(_task().sample(jax.random.key(1), 4)['point_mask_BxN'])
  every = np.asarray(_task(loss_at='all').sample(jax.random.key(1), 4)['point_mask_BxN'])
  np.testing.assert_array_equal(last, np.tile([0, 0, 0, 0, 1.0], (4, 1)))
  np.testing.assert_array_equal(every, 1.0)


def test_labels_are_noisy_linear_with_the_papers_variance():
  task = _task(n_dims=4, n_points=64)
  batch, params = task.sample_with_functions(jax.random.key(2), 256)
  w_BxD = np.asarray(params['w_D'])
  residual = np.asarray(batch['ys_BxN']) - np.einsum('bnd,bd->bn', np.asarray(batch['xs_BxNxD']),
                                                     w_BxD)
  assert np.var(residual) == pytest.approx(0.1, rel=0.05)


def test_bad_loss_at_is_refused():
  with pytest.raises(ConfigError, match='task.loss_at'):
    _task(loss_at='first')
