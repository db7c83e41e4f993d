"""Initialisations that follow a paper and depend on the block's depth (MixerSpec.layer_index /
num_layers): von Oswald et al.'s linear self-attention and RWKV-4's time mixing."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs.linear_regression import get_config
from data import get_task
from models.mixers import MIXERS, MixerSpec
from models.model import build_model


def regression_model(mixer, variant='tiny', **model_overrides):
  config = get_config(variant)
  config.model.mixer = mixer
  config.model.update(model_overrides)
  task = get_task(config.task)
  return config, task, build_model(task.io(), config.model, seed=0)


def test_model_tells_each_block_its_depth():
  _, _, model = regression_model('rwkv,attention', num_layers=4)
  specs = [block.mixer.spec for block in model.blocks]
  assert [s.layer_index for s in specs] == [0, 1, 2, 3]
  assert {s.num_layers for s in specs} == {4}


# ---- linear self-attention (von Oswald et al. 2023) ------------------------------------------

def test_lsa_weights_follow_variance_scaling_over_depth():
  config, _, model = regression_model('linear_self_attention', variant='small')
  L, d = config.model.num_layers, config.model.d_model
  expected_std = math.sqrt(0.002 / L / d)   # VarianceScaling(0.002 / L), fan_in = d
  kernels = [k for block in model.blocks for k in (block.mixer.qkv.kernel[...],
                                                    block.mixer.out.kernel[...])]
  for kernel in kernels:
    assert abs(float(jnp.std(kernel)) / expected_std - 1) < 0.05
    # truncated at two standard deviations of the untruncated normal (~2.27 expected_std)
    assert float(jnp.max(jnp.abs(kernel))) < 2.3 * expected_std
  assert all(block.mixer.qkv.bias is None for block in model.blocks)


def test_lsa_init_scale_option_and_plain_linear_attention_unchanged():
  _, _, lsa = regression_model('linear_self_attention', num_layers=2, d_model=64,
                               mixer_options={'linear_self_attention': {'init_scale': 0.5}})
  assert abs(float(jnp.std(lsa.blocks[0].mixer.qkv.kernel[...])) / math.sqrt(0.5 / 2 / 64)
             - 1) < 0.05
  _, _, la = regression_model('linear_attention', num_layers=2, d_model=64)
  # Katharopoulos et al.'s mixer keeps the default LeCun-normal projections (std 1/sqrt(d)).
  assert abs(float(jnp.std(la.blocks[0].mixer.qkv.kernel[...])) * 8 - 1) < 0.05


def test_lsa_model_output_is_order_one_at_init():
  """With the default (LeCun) projections the cubic LSA makes the residual stream of the
  tiny model ~150 at the last position (each mixer adds ~50-100); at the paper's scale each
  block starts near the identity."""
  _, task, model = regression_model('linear_self_attention')
  batch = task.sample(jax.random.key(0), 64)
  x = task.model_inputs(batch)
  h = model._embed(x, jnp.arange(x.shape[1]))
  for block in model.blocks:
    mixed = block.mixer(block.mixer_norm(h))
    assert float(jnp.std(mixed[:, -1])) < 0.1
    h = block(h)
  assert 1e-3 < float(jnp.std(h[:, -1])) < 3.0
  out = model(x)
  assert bool(jnp.all(jnp.isfinite(out))) and float(jnp.std(out[:, -1])) < 3.0


# ---- RWKV-4 ----------------------------------------------------------------------------------

def rwkv4_reference(d, layer_id, n_layer):
  """RWKV-4's time-mix init written as its loops (ratio_0_to_1 := 0 when n_layer == 1)."""
  r01 = layer_id / (n_layer - 1) if n_layer > 1 else 0.0
  r10 = 1.0 - layer_id / n_layer
  decay = [-5 + 8 * (h / (d - 1)) ** (0.7 + 1.3 * r01) for h in range(d)]
  first = [math.log(0.3) + ((i + 1) % 3 - 1) * 0.5 for i in range(d)]
  x = [i / d for i in range(d)]
  return {'time_decay': decay, 'time_first': first,
          'mix_k': [v ** r10 for v in x],
          'mix_v': [v ** r10 + 0.3 * r01 for v in x],
          'mix_r': [v ** (0.5 * r10) for v in x]}


@pytest.mark.parametrize('num_layers', [1, 3, 4])
def test_rwkv_time_mix_init_per_layer(num_layers):
  config, _, model = regression_model('rwkv', num_layers=num_layers)
  d = config.model.d_model
  for layer_id, block in enumerate(model.blocks):
    mixer = block.mixer
    for name, values in rwkv4_reference(d, layer_id, num_layers).items():
      np.testing.assert_allclose(np.asarray(getattr(mixer, name)[...]), values, rtol=1e-5,
                                 atol=1e-6, err_msg=f'layer {layer_id} {name}')
    for name in ('key', 'receptance', 'output'):
      assert not np.any(np.asarray(getattr(mixer, name).kernel[...])), name
    w_v = np.asarray(mixer.value.kernel[...], np.float64)
    np.testing.assert_allclose(w_v.T @ w_v, np.eye(d), atol=1e-5)
  if num_layers > 1:   # the layers differ: deeper layers decay more slowly on most channels
    first, last = model.blocks[0].mixer, model.blocks[-1].mixer
    assert not np.allclose(first.time_decay[...], last.time_decay[...])


def test_rwkv_zero_init_is_trainable_and_step_matches_parallel():
  spec = MixerSpec(d_model=16, num_heads=2, max_len=10, position='none', num_layers=4,
                   layer_index=2)
  mixer = MIXERS['rwkv'](spec, ml_collections.ConfigDict({}), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 10, 16))
  np.testing.assert_array_equal(mixer(x), 0.0)   # a fresh block adds nothing

  def loss(m):
    return jnp.sum(m(x) * jnp.arange(16.0))
  grads = nnx.grad(loss)(mixer)
  assert float(jnp.abs(grads.output.kernel[...]).max()) > 1e-3   # r = 1/2, wkv = mean of v
  # After an update the layer-dependent parameters drive a non-trivial output, and the step
  # form still reproduces the parallel form.
  keys = jax.random.split(jax.random.key(2), 3)
  for k, layer in zip(keys, (mixer.key, mixer.receptance, mixer.output)):
    layer.kernel[...] = 0.3 * jax.random.normal(k, layer.kernel[...].shape)
  y = mixer(x)
  assert float(jnp.std(y)) > 1e-2
  state, outs = mixer.init_state(2), []
  for t in range(10):
    y_t, state = mixer.step(x[:, t], state)
    outs.append(y_t)
  np.testing.assert_allclose(jnp.stack(outs, 1), y, atol=2e-4, rtol=2e-4)


def test_rwkv_rejects_a_layer_index_beyond_the_depth():
  from core import ConfigError
  spec = MixerSpec(d_model=8, num_heads=2, max_len=4, position='none', num_layers=2,
                   layer_index=2)
  with pytest.raises(ConfigError):
    MIXERS['rwkv'](spec, ml_collections.ConfigDict({}), rngs=nnx.Rngs(0))
