"""Chunk-parallel forms of the linear-recurrence mixers against their reference forms.

For each mixer the chunked parallel form (option `chunk_size` = C) must give the reference
form's outputs and parameter gradients to float32 tolerance, at a chunk that divides T, one
that does not, C = 1 and C >= T, with parameters perturbed so that some decays are strong
(cumulative log-decays of hundreds within a chunk); its step form must agree with it too.
References: Mamba's sequential scan, RWKV's WKV recurrence under `lax.scan`, S4D's FFT
convolution (chunk_size 0 for all three); for GLA, retention and linear attention, whose
parallel form has always been chunked, the step recurrence run over time.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from core import ConfigError
from models.mixers import MIXERS, MixerSpec

D_MODEL, HEADS, T, B = 8, 2, 11, 2
CHUNKS = (1, 3, 4, T, T + 5)          # 3 and 4 do not divide T = 11; T + 5 exceeds it
TOL = dict(rtol=2e-4, atol=2e-4)

# The reference form of each mixer, as options; None: the step form scanned over time.
REFERENCE = {
    'mamba': dict(chunk_size=0, scan='sequential'),
    'rwkv': dict(chunk_size=0),
    's4d': dict(chunk_size=0),
    'gla': None,
    'retention': None,
    'linear_attention': None,
}
EXTRA_OPTIONS = {'rwkv': {'zero_init': False}, 'mamba': {'state_dim': 4}, 's4d': {'state_dim': 8}}


def make(name, **options):
  cls = MIXERS[name]
  spec = MixerSpec(d_model=D_MODEL, num_heads=HEADS, max_len=T, position='none')
  merged = {**cls.default_options, **EXTRA_OPTIONS.get(name, {}), **options}
  return cls(spec, ml_collections.ConfigDict(merged), rngs=nnx.Rngs(0))


def perturb(name, mixer):
  """Random parameters with strong decays in some channels (a test the trivial init could pass
  by accident, e.g. RWKV's zero projections or S4D's slow initial decays, would not)."""
  rng = np.random.default_rng(7)
  def set_(param, value):
    param[...] = jnp.asarray(value, jnp.float32)
  if name == 'mamba':
    # Δ up to ~e^2 on half the channels and A up to -4 e^1.5: log-decays of -100s per step.
    dt_bias = rng.normal(size=mixer.dt_bias.shape)
    dt_bias[::2] += 7.0
    set_(mixer.dt_bias, dt_bias)
    set_(mixer.A_log, mixer.A_log[...] + rng.uniform(0, 1.5, mixer.A_log.shape))
    set_(mixer.D, rng.normal(size=mixer.D.shape))
  elif name == 'rwkv':
    set_(mixer.time_decay, rng.uniform(-5.0, 4.0, mixer.time_decay.shape))   # w up to e^4
    set_(mixer.time_first, rng.normal(size=mixer.time_first.shape) * 2)
    set_(mixer.key.kernel, rng.normal(size=mixer.key.kernel.shape) * 5)        # large k: e^k
  elif name == 's4d':
    set_(mixer.log_dt, rng.uniform(-3.0, 3.0, mixer.log_dt.shape))             # Δ up to e^3
    set_(mixer.A_imag, rng.normal(size=mixer.A_imag.shape) * 3)
  elif name == 'gla':
    bias = rng.normal(size=mixer.gate_up.bias.shape)
    bias[::2] = -100.0                                     # log alpha ~ -6 per step
    set_(mixer.gate_up.bias, bias)
    set_(mixer.norm.scale, rng.normal(size=mixer.norm.scale.shape))
  elif name == 'retention':
    mixer.log_decays_H = (-4.0, -0.01)                     # one fast, one slow head
    set_(mixer.norm.bias, rng.normal(size=mixer.norm.bias.shape))
  return mixer


def with_chunk(name, reference, chunk):
  """A mixer with `reference`'s parameters whose parallel form uses chunk_size = chunk."""
  mixer = make(name, chunk_size=chunk)
  if name == 'retention':
    mixer.log_decays_H = reference.log_decays_H
  nnx.update(mixer, nnx.state(reference, nnx.Param))
  return mixer


def scanned_steps(mixer, x_BxTxD):
  def body(state, x_BxD):
    y_BxD, state = mixer.step(x_BxD, state)
    return state, y_BxD
  _, y_TxBxD = jax.lax.scan(body, mixer.init_state(x_BxTxD.shape[0]), x_BxTxD.swapaxes(0, 1))
  return y_TxBxD.swapaxes(0, 1)


def outputs_and_grads(mixer, x_BxTxD, cotangent_BxTxD, form, grads=True):
  """(y, d<y, cotangent>/d params or None) of `form` ('parallel' or 'steps'), compiled."""
  graphdef, params, rest = nnx.split(mixer, nnx.Param, ...)

  def forward(params):
    m = nnx.merge(graphdef, params, rest)
    return m(x_BxTxD) if form == 'parallel' else scanned_steps(m, x_BxTxD)

  @jax.jit
  def run(params):
    if not grads:
      return forward(params), None
    y, pullback = jax.vjp(forward, params)
    return y, pullback(cotangent_BxTxD)[0]
  return run(params)


def inputs():
  k1, k2 = jax.random.split(jax.random.key(1))
  return (jax.random.normal(k1, (B, T, D_MODEL)), jax.random.normal(k2, (B, T, D_MODEL)))


def assert_trees_close(got, want, what):
  for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    g, w = np.asarray(g), np.asarray(w)
    assert np.all(np.isfinite(g)), f'{what}: non-finite gradient at {path}'
    scale = max(float(np.abs(w).max()), 1e-3)   # relative to the leaf's largest entry
    np.testing.assert_allclose(g / scale, w / scale, err_msg=f'{what} at {path}', **TOL)


_cache = {}


def reference_of(name):
  """(mixer, x, cotangent, y_ref, grads_ref) for `name`, computed once per mixer."""
  if name not in _cache:
    options = REFERENCE[name]
    mixer = perturb(name, make(name, **(options or {})))
    x, cotangent = inputs()
    y, grads = outputs_and_grads(mixer, x, cotangent, 'parallel' if options else 'steps')
    _cache[name] = mixer, x, cotangent, y, grads
  return _cache[name]


@pytest.mark.parametrize('chunk', CHUNKS)
@pytest.mark.parametrize('name', sorted(REFERENCE))
def test_chunked_matches_reference(name, chunk):
  reference, x, cotangent, y_ref, grads_ref = reference_of(name)
  mixer = with_chunk(name, reference, chunk)
  y, grads = outputs_and_grads(mixer, x, cotangent, 'parallel')
  assert bool(jnp.all(jnp.isfinite(y)))
  np.testing.assert_allclose(y, y_ref, **TOL)
  assert_trees_close(grads, grads_ref, f'{name} chunk {chunk}')
  # and the strong decays matter (a mixer that ignored the state would differ from this)
  assert float(jnp.abs(y_ref).max()) > 1e-3


@pytest.mark.parametrize('name', sorted(REFERENCE))
def test_step_form_matches_chunked_form(name):
  reference, x, cotangent, _, _ = reference_of(name)
  mixer = with_chunk(name, reference, 4)
  y_chunked, _ = outputs_and_grads(mixer, x, cotangent, 'parallel', grads=False)
  y_steps, _ = outputs_and_grads(mixer, x, cotangent, 'steps', grads=False)
  np.testing.assert_allclose(y_steps, y_chunked, **TOL)


@pytest.mark.parametrize('name', ['mamba', 'rwkv', 's4d'])
def test_parameters_do_not_depend_on_the_form(name):
  """Same seed, same parameters (shapes and values) whatever chunk_size: checkpoints of one
  form restore into the other."""
  a = nnx.state(make(name, chunk_size=0), nnx.Param)
  b = nnx.state(make(name, chunk_size=4), nnx.Param)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(leaf_a, leaf_b)


def test_mamba_chunked_scan_finite_under_extreme_decay():
  """Cumulative log-decays of ~ -10^4 within one chunk: the log-space weights stay finite
  where exp(s_i) * exp(-s_j) would overflow."""
  from models.mixers.mamba import chunked_selective_scan, selective_scan
  keys = jax.random.split(jax.random.key(3), 4)
  Bk, Tk, E, N = 1, 40, 3, 2
  dt = jax.nn.softplus(jax.random.normal(keys[0], (Bk, Tk, E)) * 3 + 4.0)
  x = jax.random.normal(keys[1], (Bk, Tk, E))
  b, c = jax.random.normal(keys[2], (Bk, Tk, N)), jax.random.normal(keys[3], (Bk, Tk, N))
  A = -jnp.array([[1.0, 60.0]] * E)
  D = jnp.ones((E,))
  chunked = jax.jit(lambda dt: chunked_selective_scan(x, dt, b, c, A, D, 32))
  np.testing.assert_allclose(chunked(dt), selective_scan(x, dt, b, c, A, D, scan='sequential'),
                             **TOL)
  grad = jax.grad(lambda dt: chunked(dt).sum())(dt)
  assert bool(jnp.all(jnp.isfinite(grad)))


def test_rwkv_chunked_wkv_finite_for_large_keys():
  """Keys of +-80 (e^k near float32's limit): every exponent is taken relative to a maximum."""
  from models.mixers.rwkv import chunked_wkv
  keys = jax.random.split(jax.random.key(4), 3)
  k = jax.random.uniform(keys[0], (1, 30, 4), minval=-80.0, maxval=80.0)
  v = jax.random.normal(keys[1], (1, 30, 4))
  w, u = jnp.array([1e-3, 0.1, 3.0, 20.0]), jax.random.normal(keys[2], (4,))
  wkv = jax.jit(lambda k: chunked_wkv(k, v, w, u, 8))
  assert bool(jnp.all(jnp.isfinite(wkv(k))))
  # each output is a weighted mean of values seen so far
  assert bool(jnp.all(jnp.abs(wkv(k)) <= jnp.abs(v).max() + 1e-5))
  assert bool(jnp.all(jnp.isfinite(jax.grad(lambda k: wkv(k).sum())(k))))


@pytest.mark.parametrize('name', ['mamba', 'rwkv', 's4d'])
@pytest.mark.parametrize('value', [-1, 2.5, True])
def test_bad_chunk_size_raises_config_error(name, value):
  with pytest.raises(ConfigError, match='chunk_size'):
    make(name, chunk_size=value)
