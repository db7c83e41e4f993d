"""training/preference_losses.py against hand-computed values, limits and properties.

The expected values are written out from each paper's formula in plain Python (math.log,
math.exp) at fixed inputs, independently of the implementation.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training import preference_losses as pl
from training.preference_losses import LOSS_TYPES, REFERENCE_FREE, preference_loss

# Three pairs: policy / reference log-probs (summed) and per-token averages.
PC = [-10.0, -12.5, -7.0]
PR = [-11.0, -9.0, -7.5]
RC = [-10.5, -12.0, -6.0]
RR = [-10.0, -9.5, -8.0]
AC = [-0.8, -1.1, -0.05]
AR = [-1.2, -0.6, -0.3]
RAC = [-0.9, -1.0, -0.1]
RAR = [-1.0, -0.7, -0.35]
NLL = [0.85, 1.05, 0.07]
BETA = 0.5


def logsig(x):
  return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x):
  return 1.0 / (1.0 + math.exp(-x))


def arrays(*lists):
  return [jnp.asarray(v, jnp.float32) for v in lists]


def run(loss_type, pc=PC, pr=PR, rc=RC, rr=RR, **kwargs):
  kwargs.setdefault('beta', BETA)
  return preference_loss(loss_type, *arrays(pc, pr, rc, rr), **kwargs)


def _expected(loss_type, i, beta=BETA, eps=0.0, gamma=0.0, kl=None, delta=None, dw=1.0, uw=1.0):
  """The per-pair loss of pair i, from the papers' formulas in plain Python."""
  pc, pr, rc, rr = PC[i], PR[i], RC[i], RR[i]
  c, r = pc - rc, pr - rr
  h = (pc - pr) - (rc - rr)
  if loss_type == 'sigmoid':
    return -(1 - eps) * logsig(beta * h) - eps * logsig(-beta * h)
  if loss_type == 'robust':
    return (-(1 - eps) * logsig(beta * h) + eps * logsig(-beta * h)) / (1 - 2 * eps)
  if loss_type == 'hinge':
    return max(0.0, 1 - beta * h)
  if loss_type == 'ipo':
    return (h - 1 / (2 * beta)) ** 2
  if loss_type == 'bco_pair':
    if delta is None:
      delta = sum(beta * (a - b) for a, b in zip(PC + PR, RC + RR)) / (2 * len(PC))
    return -logsig(beta * c - delta) - logsig(-(beta * r - delta))
  if loss_type == 'nca_pair':
    return -logsig(beta * c) - 0.5 * logsig(-beta * c) - 0.5 * logsig(-beta * r)
  if loss_type == 'sppo_hard':
    return (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2
  if loss_type == 'apo_zero':
    return 1 - sig(beta * c) + sig(beta * r)
  if loss_type == 'apo_down':
    return sig(beta * c) + 1 - sig(beta * (c - r))
  if loss_type == 'exo_pair':
    e = eps or 1e-3
    return (sig(beta * h) * (logsig(beta * h) - math.log(1 - e))
            + sig(-beta * h) * (logsig(-beta * h) - math.log(e)))
  if loss_type == 'simpo':
    z = beta * (AC[i] - AR[i]) - gamma
    return -(1 - eps) * logsig(z) - eps * logsig(-z)
  if loss_type == 'orpo':
    odds_c = math.log(math.exp(AC[i]) / (1 - math.exp(AC[i])))
    odds_r = math.log(math.exp(AR[i]) / (1 - math.exp(AR[i])))
    return NLL[i] - beta * logsig(odds_c - odds_r)
  if loss_type == 'kto':
    z0 = max(kl or 0.0, 0.0)
    return dw * (1 - sig(beta * (c - z0))) + uw * (1 - sig(beta * (z0 - r)))
  if loss_type == 'npo':
    return -(2 / beta) * logsig(-beta * r)
  raise AssertionError(loss_type)


def _call(loss_type, **kwargs):
  if loss_type in REFERENCE_FREE:
    kwargs.setdefault('chosen_avg_logps', jnp.asarray(AC))
    kwargs.setdefault('rejected_avg_logps', jnp.asarray(AR))
  if loss_type == 'orpo':
    kwargs.setdefault('chosen_nll', jnp.asarray(NLL))
  return run(loss_type, **kwargs)


def test_loss_types_exported():
  assert set(LOSS_TYPES) == {'sigmoid', 'robust', 'hinge', 'ipo', 'bco_pair', 'nca_pair',
                             'sppo_hard', 'apo_zero', 'apo_down', 'exo_pair', 'simpo', 'orpo',
                             'kto', 'npo'}
  assert REFERENCE_FREE == ('simpo', 'orpo')
  assert isinstance(LOSS_TYPES, tuple)


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_hand_computed_values(loss_type):
  out = _call(loss_type)
  expected = [_expected(loss_type, i) for i in range(3)]
  np.testing.assert_allclose(out['losses'], expected, rtol=2e-5, atol=1e-6)
  assert out['losses'].shape == out['chosen_rewards'].shape == out['rejected_rewards'].shape


@pytest.mark.parametrize('loss_type,kwargs,expect_kwargs', [
    ('sigmoid', dict(label_smoothing=0.2), dict(eps=0.2)),
    ('robust', dict(label_smoothing=0.2), dict(eps=0.2)),
    ('exo_pair', dict(label_smoothing=0.05), dict(eps=0.05)),
    ('simpo', dict(label_smoothing=0.1, gamma=0.3), dict(eps=0.1, gamma=0.3)),
    ('simpo', dict(beta=2.0, gamma=1.0), dict(beta=2.0, gamma=1.0)),
    ('bco_pair', dict(delta=0.4), dict(delta=0.4)),
    ('kto', dict(kl=0.3, desirable_weight=1.5, undesirable_weight=0.7),
     dict(kl=0.3, dw=1.5, uw=0.7)),
    ('kto', dict(kl=-2.0), dict(kl=-2.0)),  # a negative estimate is clamped to 0
    ('ipo', dict(beta=0.1), dict(beta=0.1)),
    ('npo', dict(beta=0.2), dict(beta=0.2)),
])
def test_hand_computed_values_with_hyperparameters(loss_type, kwargs, expect_kwargs):
  out = _call(loss_type, **kwargs)
  expected = [_expected(loss_type, i, **expect_kwargs) for i in range(3)]
  np.testing.assert_allclose(out['losses'], expected, rtol=2e-5, atol=1e-6)


def test_a_few_literal_values():
  # Written out by hand for pair 0: h = (-10 + 11) - (-10.5 + 10) = 1.5; DPO at beta = 1 is
  # log(1 + e^-1.5).
  out = run('sigmoid', beta=1.0)
  assert float(out['losses'][0]) == pytest.approx(math.log(1 + math.exp(-1.5)), rel=1e-6)
  # hinge at beta = 0.5: 1 - 0.75 = 0.25; IPO: (1.5 - 1)^2 = 0.25.
  assert float(run('hinge')['losses'][0]) == pytest.approx(0.25, rel=1e-6)
  assert float(run('ipo')['losses'][0]) == pytest.approx(0.25, rel=1e-6)
  # SPPO pair 0: a = 0.5, b = -1: (0.5 - 1)^2 + (-1 + 1)^2 = 0.25.
  assert float(run('sppo_hard')['losses'][0]) == pytest.approx(0.25, rel=1e-6)


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_rewards_follow_trl(loss_type):
  out = _call(loss_type)
  if loss_type in REFERENCE_FREE:
    want_c = [BETA * a for a in AC]
    want_r = [BETA * a for a in AR]
  else:
    want_c = [BETA * (a - b) for a, b in zip(PC, RC)]
    want_r = [BETA * (a - b) for a, b in zip(PR, RR)]
  if loss_type == 'npo':
    want_c = [0.0, 0.0, 0.0]
  np.testing.assert_allclose(out['chosen_rewards'], want_c, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out['rejected_rewards'], want_r, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('eps', [0.0, 0.1, 0.3])
def test_zero_margin_is_log2_for_sigmoid(eps):
  out = run('sigmoid', pc=PC, pr=PR, rc=PC, rr=PR, label_smoothing=eps)
  np.testing.assert_allclose(out['losses'], [math.log(2.0)] * 3, rtol=1e-6)
  # Zero margin with a nonzero reference too: h = (pc - pr) - (rc - rr) = 0.
  shifted = [a + 3.0 for a in PC], [a + 3.0 for a in PR]
  out = run('sigmoid', rc=shifted[0], rr=shifted[1], label_smoothing=eps)
  np.testing.assert_allclose(out['losses'], [math.log(2.0)] * 3, rtol=1e-6)


@pytest.mark.parametrize('loss_type', [t for t in LOSS_TYPES if t not in REFERENCE_FREE])
def test_identical_policy_and_reference_give_zero_rewards(loss_type):
  out = run(loss_type, rc=PC, rr=PR)
  np.testing.assert_array_equal(out['chosen_rewards'], np.zeros(3))
  np.testing.assert_array_equal(out['rejected_rewards'], np.zeros(3))
  assert np.all(np.isfinite(out['losses']))


def test_cdpo_is_the_eps_mixture():
  eps = 0.15
  smoothed = run('sigmoid', label_smoothing=eps)['losses']
  clean = run('sigmoid')['losses']
  flipped = run('sigmoid', pc=PR, pr=PC, rc=RR, rr=RC)['losses']  # labels swapped: h -> -h
  np.testing.assert_allclose(smoothed, (1 - eps) * clean + eps * flipped, rtol=1e-6)


@pytest.mark.parametrize('eps', [0.05, 0.2, 0.4])
def test_robust_is_unbiased_under_label_noise(eps):
  # Labels flipped with probability eps: the expected robust loss is the clean DPO loss.
  robust = run('robust', label_smoothing=eps)['losses']
  robust_flipped = run('robust', pc=PR, pr=PC, rc=RR, rr=RC, label_smoothing=eps)['losses']
  clean = run('sigmoid')['losses']
  np.testing.assert_allclose((1 - eps) * robust + eps * robust_flipped, clean, rtol=1e-5)
  # And with eps = 0 it is plain DPO.
  np.testing.assert_allclose(run('robust')['losses'], clean, rtol=1e-6)


def _grads(loss_type, beta=0.1, **kwargs):
  """d sum(losses) / d (chosen, rejected) log-probs; the averages for reference-free types.

  At beta = 0.1 the targets 1/(2 beta) = 5 of IPO and SPPO lie beyond every pair's ratios.
  """
  pc, pr, rc, rr = arrays(PC, PR, RC, RR)
  ac, ar, nll = arrays(AC, AR, NLL)

  def total(chosen, rejected):
    if loss_type in REFERENCE_FREE:
      out = preference_loss(loss_type, pc, pr, beta=beta, chosen_avg_logps=chosen,
                            rejected_avg_logps=rejected, chosen_nll=-chosen, **kwargs)
    else:
      out = preference_loss(loss_type, chosen, rejected, rc, rr, beta=beta, **kwargs)
    return jnp.sum(out['losses'])

  if loss_type in REFERENCE_FREE:
    return jax.grad(total, argnums=(0, 1))(ac, ar)
  return jax.grad(total, argnums=(0, 1))(pc, pr)


# Every pairwise loss that should raise the chosen and lower the rejected log-prob (at these
# inputs: hinge is active, IPO and SPPO are below their targets, EXO is below 1 - eps).
PUSH_APART = ('sigmoid', 'robust', 'hinge', 'ipo', 'bco_pair', 'nca_pair', 'sppo_hard',
              'apo_zero', 'exo_pair', 'simpo', 'orpo', 'kto')


@pytest.mark.parametrize('loss_type', PUSH_APART)
def test_gradient_signs(loss_type):
  kwargs = dict(label_smoothing=0.1) if loss_type == 'robust' else {}
  d_chosen, d_rejected = _grads(loss_type, **kwargs)
  assert np.all(np.asarray(d_chosen) < 0), d_chosen
  assert np.all(np.asarray(d_rejected) > 0), d_rejected


def test_npo_gradient_only_through_rejected():
  d_chosen, d_rejected = _grads('npo')
  np.testing.assert_array_equal(d_chosen, np.zeros(3))
  assert np.all(np.asarray(d_rejected) > 0)


def test_apo_down_lowers_chosen_when_margin_saturates():
  # APO-down: the chosen term s(beta c) pushes the chosen likelihood down; the margin term
  # pushes it up less once the margin is large, so the net chosen gradient is positive.
  out_grad = jax.grad(lambda c: jnp.sum(preference_loss(
      'apo_down', c, jnp.asarray([-30.0]), jnp.asarray([-10.0]), jnp.asarray([-10.0]),
      beta=BETA)['losses']))(jnp.asarray([-10.0]))
  assert float(out_grad[0]) > 0


def test_rewards_and_delta_and_kl_carry_no_gradient():
  pc, pr, rc, rr = arrays(PC, PR, RC, RR)
  g = jax.grad(lambda c: jnp.sum(preference_loss('sigmoid', c, pr, rc, rr, beta=BETA)
                                 ['chosen_rewards']))(pc)
  np.testing.assert_array_equal(g, np.zeros(3))
  # BCO's default delta is the stop-gradient batch mean: the chosen gradient is
  # -beta * sigmoid(-(beta c - delta)) exactly.
  g = jax.grad(lambda c: jnp.sum(preference_loss('bco_pair', c, pr, rc, rr, beta=BETA)
                                 ['losses']))(pc)
  delta = sum(BETA * (a - b) for a, b in zip(PC + PR, RC + RR)) / 6
  want = [-BETA * sig(-(BETA * (a - b) - delta)) for a, b in zip(PC, RC)]
  np.testing.assert_allclose(g, want, rtol=1e-5)
  g_kl = jax.grad(lambda k: jnp.sum(preference_loss('kto', pc, pr, rc, rr, beta=BETA, kl=k)
                                    ['losses']))(jnp.float32(0.5))
  assert float(g_kl) == 0.0


def test_bco_default_delta_respects_mask():
  mask = jnp.asarray([1.0, 1.0, 0.0])
  pc, pr, rc, rr = arrays(PC, PR, RC, RR)
  pc_bad = pc.at[2].set(jnp.nan)  # a dropped pair must not leak into delta
  out = preference_loss('bco_pair', pc_bad, pr, rc, rr, beta=BETA, mask=mask)
  delta = sum(BETA * (a - b) for a, b in zip(PC[:2] + PR[:2], RC[:2] + RR[:2])) / 4
  want = [_expected('bco_pair', i, delta=delta) for i in range(2)]
  np.testing.assert_allclose(out['losses'][:2], want, rtol=1e-5)


def test_ipo_uses_all_four_averages_when_given():
  out = run('ipo', chosen_avg_logps=jnp.asarray(AC), rejected_avg_logps=jnp.asarray(AR),
            ref_chosen_avg_logps=jnp.asarray(RAC), ref_rejected_avg_logps=jnp.asarray(RAR))
  want = [((AC[i] - AR[i]) - (RAC[i] - RAR[i]) - 1 / (2 * BETA)) ** 2 for i in range(3)]
  np.testing.assert_allclose(out['losses'], want, rtol=1e-5)
  np.testing.assert_allclose(out['chosen_rewards'], [BETA * (a - b) for a, b in zip(AC, RAC)],
                             rtol=1e-5)
  # Only the policy averages (a generic caller passes them for every type): all four summed
  # log-probs are used, never a mix.
  partial = run('ipo', chosen_avg_logps=jnp.asarray(AC), rejected_avg_logps=jnp.asarray(AR))
  np.testing.assert_allclose(partial['losses'], [_expected('ipo', i) for i in range(3)],
                             rtol=1e-5)


@pytest.mark.parametrize('missing', ['chosen_avg_logps', 'rejected_avg_logps', 'both'])
def test_simpo_without_averages_raises(missing):
  kwargs = dict(chosen_avg_logps=jnp.asarray(AC), rejected_avg_logps=jnp.asarray(AR))
  if missing == 'both':
    kwargs = {}
  else:
    del kwargs[missing]
  with pytest.raises(ValueError, match='avg_logps'):
    preference_loss('simpo', *arrays(PC, PR), beta=BETA, **kwargs)
  with pytest.raises(ValueError, match='avg_logps'):
    preference_loss('orpo', *arrays(PC, PR), beta=BETA, **kwargs)


def test_reference_based_without_reference_raises():
  with pytest.raises(ValueError, match='ref_chosen_logps'):
    preference_loss('sigmoid', *arrays(PC, PR), beta=BETA)


def test_unknown_loss_type_lists_the_names():
  with pytest.raises(ValueError) as info:
    run('dpo_typo')
  message = str(info.value)
  assert 'dpo_typo' in message
  for name in LOSS_TYPES:
    assert name in message


def test_out_of_range_hyperparameters_raise():
  with pytest.raises(ValueError, match='beta'):
    run('sigmoid', beta=0.0)
  with pytest.raises(ValueError, match='label_smoothing'):
    run('robust', label_smoothing=0.5)
  with pytest.raises(ValueError, match='label_smoothing'):
    run('sigmoid', label_smoothing=0.7)


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_jit_matches_eager_with_traced_hyperparameters(loss_type):
  pc, pr, rc, rr = arrays(PC, PR, RC, RR)
  extra = {}
  if loss_type in REFERENCE_FREE:
    extra = dict(chosen_avg_logps=jnp.asarray(AC), rejected_avg_logps=jnp.asarray(AR),
                 chosen_nll=jnp.asarray(NLL))

  @jax.jit
  def f(beta, eps, pc, pr, rc, rr):
    return preference_loss(loss_type, pc, pr, rc, rr, beta=beta, label_smoothing=eps,
                           **extra)

  eps = 0.1 if loss_type != 'exo_pair' else 0.0  # exo's traced 0 must become 1e-3
  got = f(jnp.float32(BETA), jnp.float32(eps), pc, pr, rc, rr)
  want = preference_loss(loss_type, pc, pr, rc, rr, beta=BETA, label_smoothing=eps, **extra)
  for key in ('losses', 'chosen_rewards', 'rejected_rewards'):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_vmap_over_a_leading_axis(loss_type):
  # Two "seeds" stacked on a leading axis; each slice equals the unmapped call.
  stack = lambda v: jnp.stack([jnp.asarray(v), jnp.asarray(v) * 1.1])
  inputs = [stack(v) for v in (PC, PR, RC, RR, AC, AR, NLL)]

  def one(pc, pr, rc, rr, ac, ar, nll):
    return preference_loss(loss_type, pc, pr, rc, rr, beta=BETA, chosen_avg_logps=ac,
                           rejected_avg_logps=ar, chosen_nll=nll)

  mapped = jax.jit(jax.vmap(one))(*inputs)
  for s in range(2):
    single = one(*(x[s] for x in inputs))
    np.testing.assert_allclose(mapped['losses'][s], single['losses'], rtol=1e-6)
  assert mapped['losses'].shape == (2, 3)


@pytest.mark.parametrize('avg', [-1e-6, -1e-9, 0.0, -50.0, -1e4])
def test_orpo_is_finite_at_extreme_averages(avg):
  ac = jnp.asarray([avg, avg, -0.5], jnp.float32)
  ar = jnp.asarray([-50.0, -1e-6, avg], jnp.float32)

  def total(ac, ar):
    out = preference_loss('orpo', ac, ar, beta=0.1, chosen_avg_logps=ac,
                          rejected_avg_logps=ar)
    return jnp.sum(out['losses']), out

  (value, out), grads = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(ac, ar)
  assert np.all(np.isfinite(out['losses'])), out['losses']
  assert np.isfinite(float(value))
  for g in grads:
    assert np.all(np.isfinite(g)), g


def test_orpo_log_odds_accurate_near_zero():
  # avg = -1e-6: log odds = log(e^x / (1 - e^x)) ~ -1e-6 - log(1e-6); naive float32 is off.
  ac, ar = -1e-6, -2.0
  odds = lambda x: x - math.log(-math.expm1(x))
  want = 1e-6 - 0.1 * logsig(odds(ac) - odds(ar))
  out = preference_loss('orpo', *arrays([ac], [ar]), beta=0.1, chosen_avg_logps=jnp.asarray([ac]),
                        rejected_avg_logps=jnp.asarray([ar]))
  np.testing.assert_allclose(out['losses'], [want], rtol=1e-5)


def test_orpo_nll_defaults_to_negative_chosen_average():
  with_nll = _call('orpo', chosen_nll=-jnp.asarray(AC))
  default = run('orpo', chosen_avg_logps=jnp.asarray(AC), rejected_avg_logps=jnp.asarray(AR))
  np.testing.assert_allclose(default['losses'], with_nll['losses'], rtol=1e-7)


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_sft_weight_adds_weighted_chosen_nll(loss_type):
  base = _call(loss_type)['losses']
  mixed = _call(loss_type, sft_weight=0.3, chosen_nll=jnp.asarray(NLL))['losses']
  np.testing.assert_allclose(mixed, np.asarray(base) + 0.3 * np.asarray(NLL), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(pl.sft_term(jnp.asarray(NLL), 0.3), [0.3 * v for v in NLL],
                             rtol=1e-6)


def test_sft_weight_without_nll_raises():
  with pytest.raises(ValueError, match='chosen_nll'):
    run('sigmoid', sft_weight=1.0)


def test_preference_metrics_masked_means():
  out = run('sigmoid')
  mask = jnp.asarray([1.0, 0.0, 1.0])
  pc = jnp.asarray([PC[0], jnp.nan, PC[2]])  # the dropped pair's garbage must not leak
  metrics = pl.preference_metrics(out, pc, jnp.asarray(PR), mask)
  assert set(metrics) == {'rewards/chosen', 'rewards/rejected', 'rewards/accuracies',
                          'rewards/margins', 'logps/chosen', 'logps/rejected'}
  cr = [BETA * (PC[i] - RC[i]) for i in (0, 2)]
  rr = [BETA * (PR[i] - RR[i]) for i in (0, 2)]
  expect = {
      'rewards/chosen': sum(cr) / 2,
      'rewards/rejected': sum(rr) / 2,
      'rewards/accuracies': sum(a > b for a, b in zip(cr, rr)) / 2,
      'rewards/margins': sum(a - b for a, b in zip(cr, rr)) / 2,
      'logps/chosen': (PC[0] + PC[2]) / 2,
      'logps/rejected': (PR[0] + PR[2]) / 2,
  }
  for key, value in expect.items():
    assert float(metrics[key]) == pytest.approx(value, rel=1e-6, abs=1e-7), key
  # Without a mask: plain means over all pairs; an all-zero mask gives 0, not NaN.
  plain = pl.preference_metrics(out, jnp.asarray(PC), jnp.asarray(PR))
  assert float(plain['logps/chosen']) == pytest.approx(sum(PC) / 3, rel=1e-6)
  empty = pl.preference_metrics(out, jnp.asarray(PC), jnp.asarray(PR), jnp.zeros(3))
  assert all(float(v) == 0.0 for v in empty.values())


def test_metrics_jit():
  out = run('sigmoid')
  f = jax.jit(functools.partial(pl.preference_metrics))
  metrics = f(out, jnp.asarray(PC), jnp.asarray(PR), jnp.ones(3))
  assert float(metrics['rewards/accuracies']) == pytest.approx(
      sum(BETA * (PC[i] - RC[i]) > BETA * (PR[i] - RR[i]) for i in range(3)) / 3)
