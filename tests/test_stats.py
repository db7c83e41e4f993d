"""bootstrap_ci: a percentile bootstrap of the mean, checked against normal theory and coverage."""
import numpy as np
import pytest

from analysis.stats import bootstrap_ci


def test_shapes_and_interval_contains_mean():
  values = np.random.default_rng(0).normal(3.0, 2.0, size=(200, 5))
  mean, lo, hi = bootstrap_ci(values, num_resamples=500, seed=1)
  assert mean.shape == lo.shape == hi.shape == (5,)
  np.testing.assert_allclose(mean, values.mean(axis=0))
  assert np.all(lo < mean) and np.all(mean < hi)


def test_matches_normal_theory_for_large_samples():
  # For S = 4000 normal samples the bootstrap interval is mean +- 1.96 sd / sqrt(S) to ~5%.
  values = np.random.default_rng(2).normal(0.0, 1.0, size=(4000, 3))
  mean, lo, hi = bootstrap_ci(values, num_resamples=2000, seed=3)
  half_width = 1.959964 * values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])
  np.testing.assert_allclose(hi - mean, half_width, rtol=0.12)
  np.testing.assert_allclose(mean - lo, half_width, rtol=0.12)


def test_width_shrinks_like_inverse_sqrt_of_samples():
  rng = np.random.default_rng(4)
  _, lo_small, hi_small = bootstrap_ci(rng.normal(size=(100, 4)), num_resamples=2000, seed=5)
  _, lo_big, hi_big = bootstrap_ci(rng.normal(size=(1600, 4)), num_resamples=2000, seed=6)
  ratio = (hi_small - lo_small) / (hi_big - lo_big)  # sqrt(1600 / 100) = 4
  assert np.all(ratio > 3.0) and np.all(ratio < 5.3), ratio


def test_coverage_near_nominal():
  # 400 independent N(1, 1) samples of size 40: the 95% interval should contain the true mean
  # about 93-95% of the time (the percentile bootstrap is slightly liberal at small S). Seeds are
  # fixed, so the count is deterministic; the band leaves ~5 binomial sd either side.
  rng = np.random.default_rng(7)
  covered = 0
  repeats = 400
  for repeat in range(repeats):
    values = rng.normal(1.0, 1.0, size=(40, 1))
    _, lo, hi = bootstrap_ci(values, num_resamples=400, seed=repeat)
    covered += int(lo[0] <= 1.0 <= hi[0])
  assert 0.86 <= covered / repeats <= 0.995, covered / repeats


def test_columns_are_independent_and_level_orders_width():
  values = np.random.default_rng(8).exponential(size=(60, 4))
  _, lo, hi = bootstrap_ci(values, num_resamples=300, seed=9)
  for column in range(4):
    _, lo_one, hi_one = bootstrap_ci(values[:, [column]], num_resamples=300, seed=9)
    np.testing.assert_allclose([lo_one[0], hi_one[0]], [lo[column], hi[column]])
  _, lo_90, hi_90 = bootstrap_ci(values, num_resamples=300, seed=9, level=0.9)
  assert np.all(hi_90 - lo_90 < hi - lo)


def test_resampled_means_follow_brute_force_resampling():
  # Same distribution as explicit index resampling: compare quantiles of both at large R.
  rng = np.random.default_rng(10)
  values = rng.normal(size=(30, 1))
  _, lo, hi = bootstrap_ci(values, num_resamples=20000, seed=11)
  indices = rng.integers(0, 30, size=(20000, 30))
  brute = values[indices, 0].mean(axis=1)
  lo_ref, hi_ref = np.quantile(brute, [0.025, 0.975])
  np.testing.assert_allclose([lo[0], hi[0]], [lo_ref, hi_ref], atol=0.02)


def test_single_sample_and_bad_input():
  mean, lo, hi = bootstrap_ci(np.array([[2.0, -1.0]]))
  np.testing.assert_allclose(mean, [2.0, -1.0])
  np.testing.assert_allclose(lo, mean)
  np.testing.assert_allclose(hi, mean)
  with pytest.raises(ValueError):
    bootstrap_ci(np.zeros(5))
  with pytest.raises(ValueError):
    bootstrap_ci(np.zeros((5, 2)), level=1.5)
  with pytest.raises(ValueError):
    bootstrap_ci(np.array([[np.nan]]))


def test_draw_in_blocks_is_a_prefix_of_longer_draws_and_keyed_by_seed():
  import jax
  from analysis.base import GENERATION_BLOCK, draw_in_blocks

  def sample_block(key):
    return {'u_B': jax.random.uniform(key, (GENERATION_BLOCK,)),
            'row_Bx2': jax.random.normal(key, (GENERATION_BLOCK, 2))}

  long = draw_in_blocks(sample_block, GENERATION_BLOCK + 44, seed=3)
  short = draw_in_blocks(sample_block, 100, seed=3)
  assert long['u_B'].shape == (GENERATION_BLOCK + 44,) and long['row_Bx2'].shape[1] == 2
  np.testing.assert_array_equal(long['u_B'][:100], short['u_B'])
  second = np.asarray(jax.random.uniform(jax.random.fold_in(jax.random.key(3), 1),
                                         (GENERATION_BLOCK,)))
  np.testing.assert_array_equal(long['u_B'][GENERATION_BLOCK:], second[:44])
  assert not np.allclose(draw_in_blocks(sample_block, 100, seed=4)['u_B'], short['u_B'])


def test_ci_entries_are_the_bootstrap_interval_as_lists_and_floats():
  from analysis.stats import ci_entry, scalar_ci_entry
  values = np.random.default_rng(0).normal(size=(50, 3))
  mean, lo, hi = bootstrap_ci(values, num_resamples=200, seed=7)
  entry = ci_entry(values, seed=7, num_resamples=200)
  np.testing.assert_allclose(entry['lo'], lo)
  np.testing.assert_allclose(entry['hi'], hi)
  assert entry['mean'] == mean.tolist()
  scalar = scalar_ci_entry(values[:, 1], seed=7, num_resamples=200)
  assert scalar == pytest.approx({k: entry[k][1] for k in ('mean', 'lo', 'hi')}, rel=1e-12)
  assert all(isinstance(v, float) for v in scalar.values())
