"""The full model: step form == parallel form, per-layer patterns, options, generation."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs.common import model_config
from data.base import ConfigError, ModelIO
from models.generate import generate, sample_logits
from models.model import build_model, layer_mixers, param_count

TOKENS = ModelIO(input_kind='tokens', vocab_size=11, output_dim=11, seq_len=16)
VECTORS = ModelIO(input_kind='vectors', input_dim=5, output_dim=1, seq_len=16)


def small_config(**overrides):
  cfg = model_config('tiny')
  cfg.num_layers, cfg.d_model, cfg.num_heads = 2, 32, 2
  cfg.update(overrides)
  return cfg


def run_steps(model, inputs):
  state = model.init_state(inputs.shape[0])
  outs = []
  for t in range(inputs.shape[1]):
    y, state = model.step(inputs[:, t], state)
    outs.append(y)
  return jnp.stack(outs, 1)


@pytest.mark.parametrize('overrides', [
    dict(),
    dict(mixer='attention,mamba', position='rope', norm='rmsnorm', mlp='swiglu'),
    dict(mixer='lstm', position='none', norm_position='post'),
    dict(mixer='gla', mlp='none', position='alibi'),
])
def test_model_step_matches_parallel_tokens(overrides):
  model = build_model(TOKENS, small_config(**overrides), seed=0)
  tokens = jax.random.randint(jax.random.key(0), (2, 16), 0, 11)
  np.testing.assert_allclose(run_steps(model, tokens), model(tokens), atol=2e-4, rtol=2e-4)


def test_model_step_matches_parallel_vectors():
  model = build_model(VECTORS, small_config(), seed=0)
  x = jax.random.normal(jax.random.key(1), (2, 16, 5))
  out = model(x)
  assert out.shape == (2, 16, 1)
  np.testing.assert_allclose(run_steps(model, x), out, atol=2e-4, rtol=2e-4)


def test_layer_pattern_repeats_and_rejects():
  cfg = small_config(num_layers=4, mixer='attention,mamba')
  assert layer_mixers(cfg) == ['attention', 'mamba', 'attention', 'mamba']
  model = build_model(TOKENS, cfg, seed=0)
  assert [type(b.mixer).mixer_name for b in model.blocks] == layer_mixers(cfg)
  with pytest.raises(ConfigError, match='divide'):
    layer_mixers(small_config(num_layers=3, mixer='attention,mamba'))
  with pytest.raises(ConfigError, match='known: .*attention'):
    build_model(TOKENS, small_config(mixer='transformerz'), seed=0)


@pytest.mark.parametrize('key,value', [('norm', 'batchnorm'), ('mlp', 'relu'),
                                       ('position', 'sinusoid'), ('dtype', 'float16'),
                                       ('num_heads', 3), ('max_len', 8)])
def test_bad_model_options_name_the_key(key, value):
  with pytest.raises(ConfigError, match=f'model.{key}'):
    build_model(TOKENS, small_config(**{key: value}), seed=0)


def test_param_count_matches_closed_form():
  """GPT-2 block count: 12 d^2 + 13 d per layer (attention + GELU MLP, LayerNorms)."""
  d, layers, vocab, T = 32, 2, 11, 16
  model = build_model(TOKENS, small_config(), seed=0)
  expected = (vocab * d + T * d + layers * (12 * d * d + 13 * d) + 2 * d + (d * vocab + vocab))
  assert param_count(model) == expected


def test_mlp_none_removes_mlp_params():
  with_mlp = param_count(build_model(TOKENS, small_config(), seed=0))
  without = param_count(build_model(TOKENS, small_config(mlp='none'), seed=0))
  d = 32
  assert with_mlp - without == 2 * (8 * d * d + 4 * d + d + 2 * d)


def test_bfloat16_model_runs_with_float32_params():
  model = build_model(TOKENS, small_config(dtype='bfloat16'), seed=0)
  tokens = jax.random.randint(jax.random.key(0), (2, 16), 0, 11)
  out = model(tokens)
  assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  ref = build_model(TOKENS, small_config(), seed=0)(tokens)
  assert float(jnp.max(jnp.abs(out - ref))) < 0.1  # same weights, lower precision


@pytest.mark.parametrize('mixer', ['attention', 'mamba', 'retention'])
def test_greedy_generation_agrees_with_parallel_forward(mixer):
  model = build_model(TOKENS, small_config(mixer=mixer), seed=3)
  prompt = jax.random.randint(jax.random.key(5), (3, 6), 0, 11)
  prompt_len = jnp.array([6, 4, 2])
  out = jax.jit(lambda p, l: generate(model, p, l, 10, jax.random.key(0), 0.0, 0))(prompt,
                                                                                   prompt_len)
  assert out.shape == (3, 16)
  logits = model(out)
  for row in range(3):
    n = int(prompt_len[row])
    np.testing.assert_array_equal(out[row, :n], prompt[row, :n])
    # every generated token is the argmax of the parallel forward pass over its prefix
    np.testing.assert_array_equal(out[row, n:], jnp.argmax(logits[row, n - 1:-1], -1))


def test_generation_refuses_overlong_output():
  model = build_model(TOKENS, small_config(), seed=0)
  with pytest.raises(ValueError, match='exceeds the model context'):
    generate(model, jnp.zeros((1, 10), jnp.int32), jnp.array([10]), 7, jax.random.key(0))


def test_top_k_and_temperature_sampling_distribution():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  keys = jax.random.split(jax.random.key(0), 4000)
  draw = jax.vmap(lambda k, t, kk: sample_logits(k, logits, t, kk)[0], in_axes=(0, None, None))
  full = np.bincount(np.asarray(jax.jit(lambda k: draw(k, 1.0, 0), static_argnums=())(keys)),
                     minlength=4) / 4000
  np.testing.assert_allclose(full, [0.5, 0.3, 0.15, 0.05], atol=0.03)
  top2 = np.bincount(np.asarray(jax.vmap(lambda k: sample_logits(k, logits, 1.0, 2)[0])(keys)),
                     minlength=4) / 4000
  np.testing.assert_allclose(top2, [0.625, 0.375, 0, 0], atol=0.03)
  greedy = jax.vmap(lambda k: sample_logits(k, logits, 0.0, 0)[0])(keys)
  assert bool(jnp.all(greedy == 0))


# bfloat16 compute keeps float32 parameters; after a 2-layer, width-32 forward on 16 tokens
# every mixer's logits stay within this of float32's (bfloat16 has an 8-bit mantissa).
BF16_LOGIT_TOLERANCE = 0.15


@pytest.mark.parametrize('mixer', ['attention', 'gla', 'hyena', 'linear_attention',
                                   'linear_self_attention', 'mamba', 'momentum_attention',
                                   'ngram_head', 'retention', 'lstm', 'gru', 'rwkv', 's4d'])
def test_bfloat16_compute_agrees_with_float32_for_every_mixer(mixer):
  from models.mixers import MIXERS
  assert mixer in MIXERS
  tokens = jax.random.randint(jax.random.key(0), (2, 16), 0, 11)
  targets = jax.random.randint(jax.random.key(1), (2, 16), 0, 11)

  def loss_and_grads(dtype):
    model = build_model(TOKENS, small_config(mixer=mixer, dtype=dtype), seed=0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def loss_fn(params):
      logits = nnx.merge(graphdef, params, rest)(tokens)
      log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
      return -jnp.mean(jnp.take_along_axis(log_probs, targets[..., None], -1)), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, logits, grads

  loss32, logits32, _ = loss_and_grads('float32')
  loss16, logits16, grads16 = loss_and_grads('bfloat16')
  assert logits16.dtype == jnp.float32
  assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree.leaves(grads16))
  assert float(jnp.max(jnp.abs(logits16 - logits32))) < BF16_LOGIT_TOLERANCE
  assert abs(float(loss16) - float(loss32)) < 0.02
