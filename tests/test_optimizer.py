"""Learning-rate schedules against closed forms; which parameters are weight-decayed."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.common import train_config
from data.base import ConfigError
from training.optimizer import (_decays, learning_rate_schedule, make_optimizer,
                                validate_optimizer_config)


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
    validate_optimizer_config(t)
  with pytest.raises(ConfigError, match='train.schedule'):
    make_optimizer(t)


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


# Leaf names that are weight matrices (projections, recurrent / convolution weights, S4D's C).
WEIGHT_MATRIX_NAMES = {'kernel', 'input_kernel', 'recurrent_kernel', 'conv_kernel', 'dt_kernel',
                       'short_kernel', 'C'}


def _model_params(mixer):
  from flax import nnx
  from configs.common import model_config
  from core import ModelIO
  from models.model import build_model
  cfg = model_config('tiny')
  cfg.num_layers, cfg.d_model, cfg.mixer = 1, 32, mixer
  io = ModelIO(input_kind='tokens', vocab_size=11, output_dim=11, seq_len=16)
  return nnx.state(build_model(io, cfg, seed=0), nnx.Param)


def _names(path):
  return [str(getattr(k, 'key', getattr(k, 'name', k))) for k in path if
          str(getattr(k, 'key', getattr(k, 'name', k))) != 'value']


def _all_mixers():
  from models.mixers import MIXERS
  return sorted(MIXERS)


@pytest.mark.parametrize('mixer', _all_mixers())
def test_decay_mask_on_real_models_is_weight_matrices_only(mixer):
  params = _model_params(mixer)
  decayed, kept = [], []
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    (decayed if _decays(path, leaf) else kept).append((_names(path), leaf))
  assert decayed
  for names, leaf in decayed:
    assert leaf.ndim >= 2 and names[-1] in WEIGHT_MATRIX_NAMES, names
    assert not any('norm' in n or 'bias' in n or n == 'scale' for n in names), names
  for names, leaf in kept:   # what is kept is a norm, a bias, a vector or a named exception
    assert (leaf.ndim < 2 or names[-1] in ('scale', 'bias', 'embedding') or 'bias' in names[-1]
            or any(n in ('A_log', 'log_A_real', 'A_imag', 'filter_in', 'filter_inner',
                         'filter_out') for n in names)), names


@pytest.mark.parametrize('mixer', ['gla', 'retention'])
def test_per_head_norm_scales_are_not_decayed(mixer):
  """GLA's and retention's per-head norms hold (heads, width) scales / biases: 2-D, yet not
  weights. With zero gradients only decoupled decay moves a parameter."""
  params = _model_params(mixer)
  norm = params['blocks'][0]['mixer']['norm']
  assert norm['scale'][...].ndim == 2
  t = train_config()
  t.update(dict(weight_decay=0.5, learning_rate=1e-2, warmup_steps=0, schedule='constant',
                grad_clip_norm=0.0))
  opt = make_optimizer(t)
  updates, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
  mixer_updates = updates['blocks'][0]['mixer']
  for name in ('scale', 'bias'):
    np.testing.assert_array_equal(mixer_updates['norm'][name][...], 0.0)
  out_kernel = params['blocks'][0]['mixer']['out']['kernel'][...]
  np.testing.assert_allclose(mixer_updates['out']['kernel'][...], -1e-2 * 0.5 * out_kernel,
                             rtol=1e-5)
