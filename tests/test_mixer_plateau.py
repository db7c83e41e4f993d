"""The plateau-exit detector of studies/mixer_plateau.py on planted curves, and the
predict-zero reference against a direct computation."""
import json
import os

import numpy as np
import pytest

from studies import mixer_plateau as mp


def test_exit_is_first_step_below_the_threshold_that_stays_below():
  steps = np.arange(0, 2000, 100)
  errors = np.full(steps.shape, 0.97)
  errors[12:] = np.linspace(0.75, 0.2, 8)          # leaves at step 1200
  assert mp.plateau_exit_step(steps, errors, reference=1.0) == 1200
  # The threshold is relative to the reference: with reference 0.9, 0.75 > 0.72 still counts
  # as the plateau and the exit moves one evaluation later.
  assert mp.plateau_exit_step(steps, errors, reference=0.9) == 1300


def test_a_single_dip_does_not_count_and_a_flat_curve_never_leaves():
  steps = np.arange(0, 1000, 100)
  errors = np.full(steps.shape, 0.96)
  errors[3] = 0.5                                   # one noisy evaluation
  assert mp.plateau_exit_step(steps, errors, 1.0) is None
  errors[7:] = 0.3
  assert mp.plateau_exit_step(steps, errors, 1.0) == 700
  assert mp.plateau_exit_step(steps, np.full(steps.shape, 0.96), 1.0) is None
  # A drop at the very last evaluation counts (nothing after it to contradict it).
  late = np.full(steps.shape, 0.96)
  late[-1] = 0.1
  assert mp.plateau_exit_step(steps, late, 1.0) == 900


def test_analyse_reads_vmapped_seeds_and_the_zero_reference(tmp_path):
  from configs.linear_regression import get_config
  config = get_config('tiny')
  config.train.num_steps = 400
  config.train.num_seeds = 2
  config.eval.train_prompts = 32
  run_dir = tmp_path / 'gla'
  run_dir.mkdir()
  (run_dir / 'config.json').write_text(config.to_json())
  rows = [{'step': s, 'kind': 'eval', 'eval/error_last': [e0, e1]}
          for s, e0, e1 in [(100, 0.98, 0.97), (200, 0.5, 0.96), (300, 0.3, 0.95),
                            (400, 0.2, 0.99)]]
  rows.insert(1, {'step': 150, 'loss': [1.0, 1.0]})   # train rows are ignored
  (run_dir / 'metrics.jsonl').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
  results = mp.analyse(str(tmp_path))
  r = results['gla']
  # Predict-zero error on the scheduled-evaluation prompts, computed directly.
  import jax
  from data import get_task
  task = get_task(config.task)
  batch = task.sample(jax.random.key(config.eval.seed), 32, 400)
  expected = float(np.mean(np.asarray(batch['ys_BxN'])[:, -1] ** 2) / config.task.n_dims)
  assert r['zero_error'] == pytest.approx(expected, rel=1e-6)
  assert 0.4 < r['zero_error'] < 2.0
  assert r['exit_steps'] == [200, None] and r['num_left'] == 1
  assert r['mean_exit_step'] == 200
  assert r['mean_final_error'] == pytest.approx(0.595)
  assert r['finished']
  text = mp.table(results)
  assert '| gla |' in text and '1/2' in text
  out = tmp_path / 'out'
  assert mp.main(['--workdir', str(tmp_path), '--out', str(out)]) == 0
  assert os.path.isfile(out / 'mixer_plateau.png')
  assert mp.main(['--workdir', str(tmp_path), '--fraction', '1.5']) == 2


# -- The GLA ablation options of the plateau study (model.mixer_options.gla.*) --------------

@pytest.mark.parametrize('output_norm', ['rmsnorm', 'none'])
def test_gla_output_norm_variants_match_numpy(output_norm):
  from tests.test_attention_mixers import (B, D, H, T, apply, arr, heads, inputs, linear, make,
                                           np_gated_recurrence, swish)
  mixer = make('gla', output_norm=output_norm, gate_logit_normalizer=4.0, gate_bias_init=-1.5)
  np.testing.assert_allclose(arr(mixer.gate_up.bias), -1.5)
  assert hasattr(mixer, 'norm') == (output_norm != 'none')
  if output_norm == 'rmsnorm':
    assert not hasattr(mixer.norm, 'bias')
    mixer.norm.scale[...] = np.random.default_rng(3).normal(size=mixer.norm.scale.shape)
  x = inputs()
  q = heads(linear(mixer.q_proj, x)) / np.sqrt(mixer.key_dim)
  k, v = heads(linear(mixer.k_proj, x)), heads(linear(mixer.v_proj, x))
  log_alpha = heads(-np.logaddexp(0, -linear(mixer.gate_up, linear(mixer.gate_down, x))) / 4.0)
  o = np_gated_recurrence(*(a.transpose(0, 2, 1, 3) for a in (q, k, v, log_alpha)))
  o = o.transpose(0, 2, 1, 3)
  if output_norm == 'rmsnorm':
    o = o / np.sqrt(np.mean(o ** 2, -1, keepdims=True) + mixer.norm.eps) * arr(mixer.norm.scale)
  y = o.reshape(B, T, -1) * swish(linear(mixer.out_gate, x))
  np.testing.assert_allclose(apply(mixer, x), linear(mixer.out, y), atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize('option,value', [('output_norm', 'layernorm'),
                                          ('gate_bias_init', float('nan')),
                                          ('gate_bias_init', True)])
def test_gla_bad_ablation_option_is_a_config_error(option, value):
  from core import ConfigError
  from tests.test_attention_mixers import make
  with pytest.raises(ConfigError, match=f'model.mixer_options.gla.{option}'):
    make('gla', **{option: value})
