"""Properties every registered mixer must have (one parametrised test per property)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from models.mixers import MIXERS, MixerSpec

D_MODEL, HEADS, T, B = 16, 2, 12, 2
VOCAB = 7


# Options that make a fresh mixer a non-trivial function: RWKV-4's own init zeroes the output
# projection (a constant-0 mixer), which would pass the properties below vacuously.
FUNCTION_TEST_OPTIONS = {'rwkv': {'zero_init': False}}


def make(name, position='none', dtype=jnp.float32, seed=0):
  cls = MIXERS[name]
  spec = MixerSpec(d_model=D_MODEL, num_heads=HEADS, max_len=T, position=position, dtype=dtype)
  options = ml_collections.ConfigDict({**cls.default_options,
                                       **FUNCTION_TEST_OPTIONS.get(name, {})})
  return cls(spec, options, rngs=nnx.Rngs(seed))


def inputs(seed=1):
  k1, k2 = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(k1, (B, T, D_MODEL))
  tokens = jax.random.randint(k2, (B, T), 0, VOCAB)
  return x, tokens


def names():
  return sorted(MIXERS)


@pytest.mark.parametrize('name', names())
def test_causal(name):
  mixer = make(name)
  x, tokens = inputs()
  y = mixer(x, tokens_BxT=tokens)
  assert y.shape == (B, T, D_MODEL)
  t = T // 2
  x2 = x.at[:, t + 1:].set(jax.random.normal(jax.random.key(9), x[:, t + 1:].shape))
  tokens2 = tokens.at[:, t + 1:].set((tokens[:, t + 1:] + 3) % VOCAB)
  y2 = mixer(x2, tokens_BxT=tokens2)
  np.testing.assert_allclose(y[:, :t + 1], y2[:, :t + 1], atol=1e-5, rtol=1e-5)
  # and the future does matter somewhere (the test could fail for a constant mixer)
  assert not np.allclose(y[:, t + 1:], y2[:, t + 1:], atol=1e-5)


# rope / alibi only change attention: those combinations are generated for it alone.
@pytest.mark.parametrize('name,position', [(n, 'none') for n in names()] +
                         [('attention', 'rope'), ('attention', 'alibi')])
def test_step_matches_parallel(name, position):
  mixer = make(name, position=position)
  x, tokens = inputs()
  y_parallel = mixer(x, tokens_BxT=tokens)
  state = mixer.init_state(B)
  outs = []
  for t in range(T):
    y_t, state = mixer.step(x[:, t], state, token_B=tokens[:, t])
    outs.append(y_t)
  y_steps = jnp.stack(outs, axis=1)
  np.testing.assert_allclose(y_steps, y_parallel, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize('name', names())
def test_step_is_jittable_under_scan(name):
  mixer = make(name)
  x, tokens = inputs()
  graphdef, state_vars = nnx.split(mixer)

  @jax.jit
  def run(state_vars, x, tokens):
    m = nnx.merge(graphdef, state_vars)
    def body(carry, xt):
      y, carry = m.step(xt[0], carry, token_B=xt[1])
      return carry, y
    _, ys = jax.lax.scan(body, m.init_state(B), (x.swapaxes(0, 1), tokens.swapaxes(0, 1)))
    return ys.swapaxes(0, 1)

  np.testing.assert_allclose(run(state_vars, x, tokens), mixer(x, tokens_BxT=tokens),
                             atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize('name', names())
def test_sizes_reported(name):
  mixer = make(name)
  size = mixer.state_size()
  assert isinstance(size, int) and size > 0
  state = mixer.init_state(1)
  carried = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(state)
                if jnp.issubdtype(a.dtype, jnp.floating))
  assert carried == size, f'{name}: state_size()={size} but init_state carries {carried} floats'


@pytest.mark.parametrize('name', names())
def test_bfloat16_compute(name):
  mixer = make(name, dtype=jnp.bfloat16)
  x, tokens = inputs()
  y = mixer(x.astype(jnp.bfloat16), tokens_BxT=tokens)
  assert y.dtype == jnp.bfloat16
  assert bool(jnp.all(jnp.isfinite(y.astype(jnp.float32))))
  # params stay float32
  params = nnx.state(mixer, nnx.Param)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


@pytest.mark.parametrize('name', names())
def test_batch_sharded_over_data_mesh_matches_single_device(name):
  """Under jit with the batch split over a 'data' mesh axis, outputs equal the unsharded ones."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  devices = jax.devices()[:2] if jax.device_count() >= 2 else jax.devices()
  mesh = Mesh(np.array(devices), ('data',))
  mixer = make(name)
  x, tokens = inputs()
  graphdef, state_vars = nnx.split(mixer)
  fn = jax.jit(lambda s, x, t: nnx.merge(graphdef, s)(x, tokens_BxT=t))
  expected = fn(state_vars, x, tokens)
  sharded = NamedSharding(mesh, P('data'))
  got = fn(jax.device_put(state_vars, NamedSharding(mesh, P())), jax.device_put(x, sharded),
           jax.device_put(tokens, sharded))
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
