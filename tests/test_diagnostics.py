"""Diagnostics: hidden states, attention probabilities, induction / previous-token scores,
and the command on a trained run."""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from analysis import diagnostics as diag
from configs.common import model_config
from core import ModelIO
from models.mixers import MIXERS, MixerSpec
from models.model import build_model

TOKENS = ModelIO(input_kind='tokens', vocab_size=11, output_dim=11, seq_len=16)
VECTORS = ModelIO(input_kind='vectors', input_dim=5, output_dim=1, seq_len=16)


def small_config(**overrides):
  cfg = model_config('tiny')
  cfg.num_layers, cfg.d_model, cfg.num_heads = 2, 16, 2
  cfg.update(overrides)
  return cfg


# ---- hidden states ----------------------------------------------------------------------------

@pytest.mark.parametrize('io, overrides', [
    (TOKENS, dict(mixer='attention,ngram_head', position='rope')),
    (VECTORS, dict(norm_position='post', position='learned')),
])
def test_hidden_states_reproduce_the_forward_pass(io, overrides):
  model = build_model(io, small_config(**overrides), seed=0)
  if io.input_kind == 'tokens':
    inputs = jax.random.randint(jax.random.key(0), (2, 16), 0, 11)
  else:
    inputs = jax.random.normal(jax.random.key(0), (2, 16, 5))
  hidden = model.hidden_states(inputs)
  assert len(hidden) == 3 and all(h.shape == (2, 16, 16) for h in hidden)
  np.testing.assert_allclose(model.output_from_hidden(hidden[-1]), model(inputs),
                             atol=1e-6, rtol=1e-6)
  # each stream is the previous one through its block
  np.testing.assert_allclose(
      model.blocks[1](hidden[1], tokens_BxT=inputs if io.input_kind == 'tokens' else None),
      hidden[2], atol=1e-6)
  stacked = diag.hidden_states(model, inputs)
  assert stacked.shape == (3, 2, 16, 16)
  np.testing.assert_allclose(stacked[-1], hidden[-1], atol=1e-5)


# ---- attention probabilities ------------------------------------------------------------------

@pytest.mark.parametrize('mixer', ['attention', 'momentum_attention'])
@pytest.mark.parametrize('position', ['learned', 'rope', 'alibi', 'none'])
def test_attention_probs_reproduce_the_mixer(mixer, position):
  spec = MixerSpec(d_model=16, num_heads=4, max_len=12, position=position)
  layer = MIXERS[mixer](spec, ml_collections.ConfigDict(), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 12, 16))
  probs = layer.attention_probs(x)
  assert probs.shape == (2, 4, 12, 12)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
  assert float(jnp.abs(jnp.triu(probs, k=1)).max()) == 0.0          # causal
  _, _, v = layer._project(x)
  attended = jnp.einsum('bhts,bshk->bthk', probs, v)
  extra = None
  if mixer == 'momentum_attention':
    from models.mixers.momentum_attention import momentum_matrix
    extra = jnp.einsum('ts,bshk->bthk', momentum_matrix(12, layer.eta), v)
  np.testing.assert_allclose(layer._combine(attended, extra), layer(x), atol=1e-5, rtol=1e-5)


def test_attention_maps_of_a_model_follow_its_blocks():
  model = build_model(TOKENS, small_config(num_layers=4, mixer='attention,ngram_head',
                                           position='alibi'), seed=1)
  assert diag.attention_layers(model) == [0, 2]
  tokens = jax.random.randint(jax.random.key(2), (3, 16), 0, 11)
  maps = diag.attention_maps(model, tokens)
  assert maps.shape == (2, 3, 2, 16, 16)
  hidden = model.hidden_states(tokens)
  block = model.blocks[2]
  np.testing.assert_allclose(maps[1], block.mixer.attention_probs(block.mixer_input(hidden[2])),
                             atol=1e-5)
  recurrent = build_model(TOKENS, small_config(mixer='lstm', position='none'), seed=0)
  assert diag.attention_maps(recurrent, tokens).shape[0] == 0


# ---- scores on hand-built patterns ------------------------------------------------------------

def _pattern(period, row):
  """maps (1, 2, 1, T, T) with row t given by row(t) (a length-T vector)."""
  T = 2 * period
  m = np.stack([row(t, T) for t in range(T)])
  return np.broadcast_to(m, (1, 2, 1, T, T)).copy()


def _one_hot(index, T):
  v = np.zeros(T)
  v[index] = 1.0
  return v


def test_perfect_induction_head_scores_one():
  n = 16
  maps = _pattern(n, lambda t, T: _one_hot(t - n + 1 if t >= n else max(t - 1, 0), T))
  assert diag.induction_scores(maps, n)[0, 0] == pytest.approx(1.0)
  assert diag.previous_token_scores(maps, n)[0, 0] == pytest.approx(0.0)


def test_uniform_causal_attention_scores_near_zero():
  n = 32
  maps = _pattern(n, lambda t, T: np.where(np.arange(T) <= t, 1.0 / (t + 1), 0.0))
  expected = np.mean(1.0 / (np.arange(n, 2 * n) + 1))     # about ln(2) / n
  assert diag.induction_scores(maps, n)[0, 0] == pytest.approx(expected)
  assert diag.previous_token_scores(maps, n)[0, 0] == pytest.approx(expected)
  assert expected < 0.03


def test_previous_token_head():
  n = 16
  maps = _pattern(n, lambda t, T: _one_hot(max(t - 1, 0), T))
  assert diag.previous_token_scores(maps, n)[0, 0] == pytest.approx(1.0)
  assert diag.induction_scores(maps, n)[0, 0] == pytest.approx(0.0)
  # vector layout: the x positions of the second copy only
  queries = diag.second_copy_positions(n, vector_layout=True)
  assert list(queries) == list(range(n, 2 * n, 2))
  assert diag.induction_scores(maps, n, queries)[0, 0] == pytest.approx(0.0)


def test_scores_per_layer_and_head():
  n = 8
  induction = _pattern(n, lambda t, T: _one_hot(t - n + 1 if t >= n else 0, T))
  previous = _pattern(n, lambda t, T: _one_hot(max(t - 1, 0), T))
  maps = np.concatenate([np.concatenate([induction, previous], axis=2),
                         np.concatenate([previous, induction], axis=2)], axis=0)  # L=2, H=2
  np.testing.assert_allclose(diag.induction_scores(maps, n), [[1, 0], [0, 1]])
  np.testing.assert_allclose(diag.previous_token_scores(maps, n), [[0, 1], [1, 0]])
  with pytest.raises(ValueError):
    diag.induction_scores(maps, 2 * n)


def test_repeated_token_prompts():
  tokens = diag.repeated_token_prompts(np.random.default_rng(0), 4, 10, list(range(1, 21)))
  assert tokens.shape == (4, 20)
  np.testing.assert_array_equal(tokens[:, :10], tokens[:, 10:])
  assert all(len(set(row[:10])) == 10 for row in tokens)        # distinct within a copy
  assert tokens.min() >= 1 and tokens.max() <= 20
  many = diag.repeated_token_prompts(np.random.default_rng(0), 2, 30, [3, 4, 5])
  assert set(np.unique(many)) <= {3, 4, 5}


def test_hand_built_attention_model_is_an_induction_head(tmp_path):
  """Plots and scores accept real model output; a PNG is written."""
  model = build_model(TOKENS, small_config(), seed=0)
  tokens = diag.repeated_token_prompts(np.random.default_rng(1), 3, 8, list(range(11)))
  maps = diag.attention_maps(model, tokens)
  scores = {'induction': diag.induction_scores(maps, 8),
            'previous_token': diag.previous_token_scores(maps, 8)}
  assert scores['induction'].shape == (2, 2)
  assert np.all((scores['induction'] >= 0) & (scores['induction'] <= 1))
  diag.plot_attention_maps(maps, str(tmp_path / 'maps.png'), period=8)
  diag.plot_head_scores(scores, str(tmp_path / 'scores.png'))
  assert (tmp_path / 'maps.png').stat().st_size > 0 and (tmp_path / 'scores.png').exists()


# ---- the command on a trained run ---------------------------------------------------------------

def test_diagnose_a_trained_regression_run(tmp_path):
  from configs.linear_regression import get_config
  from training.loop import restore_run, train
  config = get_config('tiny')
  config.task.n_dims, config.task.n_points = 3, 8
  config.model.num_layers, config.model.d_model = 2, 16
  config.train.update(dict(num_steps=4, batch_size=8, steps_per_call=2, log_every=2,
                           checkpoint_every=2, warmup_steps=1, progress=False,
                           keep_log_checkpoints=0))
  config.eval.num_log_evals = 0
  workdir = str(tmp_path / 'run')
  train(config, workdir, devices=jax.devices()[:1], log=lambda s: None)
  run = restore_run(workdir, log=lambda s: None)
  out = os.path.join(workdir, 'eval')
  result = diag.diagnose(run, out, num_prompts=8, probe_prompts=32, log=lambda s: None)
  with open(os.path.join(out, 'diagnostics.json')) as f:
    saved = json.load(f)
  assert saved['checkpoint_step'] == 4 and saved['attention_layers'] == [0, 1]
  entry = saved['per_seed'][0]
  assert np.asarray(entry['induction']).shape == (2, 2)
  assert saved['repeated_prompts']['period'] == 8     # 4 (x, y) pairs, twice: 16 positions
  assert set(entry['probes']) == {'w', 'least_squares', 'y'}
  assert np.asarray(entry['probes']['w']['r2']).shape[0] == 3   # read-in + 2 blocks
  for name in ('head_scores', 'attention_repeated', 'attention_task', 'probes'):
    assert os.path.exists(os.path.join(out, f'diagnostics_{name}.png')), name
  assert result['per_seed'][0]['max_induction']['layer'] in (0, 1)

  tracked = diag.diagnose_all_checkpoints(run, out, num_prompts=8, eval_prompts=16,
                                          log=lambda s: None)
  assert tracked['steps'] == [2, 4]
  assert np.asarray(tracked['induction']).shape == (2, 1, 2, 2)   # steps x seeds x L x H
  assert np.asarray(tracked['icl_score']).shape == (2, 1)
  assert os.path.exists(os.path.join(out, 'diagnostics_checkpoints.png'))
  with open(os.path.join(out, 'diagnostics_checkpoints.json')) as f:
    assert json.load(f)['steps'] == [2, 4]
