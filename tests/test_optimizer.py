"""Learning-rate schedules against closed forms; which parameters are weight-decayed."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.common import train_config
from data.base import ConfigError
from training.optimizer import _decays, learning_rate_schedule, make_optimizer


def test_warmup_then_cosine_closed_form():
  t = train_config()
  t.update(dict(learning_rate=1e-3, warmup_steps=100, num_steps=1100, final_lr_fraction=0.1))
  schedule = learning_rate_schedule(t)
  for step in (0, 50, 99):
    assert float(schedule(step)) == pytest.approx(1e-3 * step / 100, rel=1e-5, abs=1e-9)
  for step in (100, 350, 600, 1100):
    progress = (step - 100) / 1000
    expected = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_constant_schedule_and_bad_values():
  t = train_config()
  t.update(dict(learning_rate=3e-4, warmup_steps=0, schedule='constant'))
  assert float(learning_rate_schedule(t)(12345)) == pytest.approx(3e-4)
  t.schedule = 'step'
  with pytest.raises(ConfigError, match='train.schedule'):
    learning_rate_schedule(t)


def test_weight_decay_only_on_matrices_not_dynamics():
  t = train_config()
  t.update(dict(weight_decay=0.5, learning_rate=1e-2, warmup_steps=0, schedule='constant',
                grad_clip_norm=0.0))
  params = {'dense': {'kernel': jnp.ones((3, 3)), 'bias': jnp.ones(3)},
            'mixer': {'A_log': jnp.ones((3, 2))}, 'embed': {'embedding': jnp.ones((4, 3))}}
  opt = make_optimizer(t)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = opt.update(zeros, opt.init(params), params)
  # With zero gradients only decoupled decay moves parameters: -lr * wd * p.
  np.testing.assert_allclose(updates['dense']['kernel'], -1e-2 * 0.5 * np.ones((3, 3)), rtol=1e-6)
  for leaf in (updates['dense']['bias'], updates['mixer']['A_log'],
               updates['embed']['embedding']):
    np.testing.assert_allclose(leaf, 0.0)
