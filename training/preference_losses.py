"""Preference-optimisation losses as one pure, jittable function of per-example log-probs.

`preference_loss(loss_type, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps,
beta=...)` returns `{'losses': (B,), 'chosen_rewards': (B,), 'rejected_rewards': (B,)}`: the
per-pair loss (the caller takes the (masked) mean) and TRL's implicit rewards, which are metrics
only (stop-gradient). Inputs are arrays of shape (B,) -- or any common shape, everything is
elementwise except the batch statistics noted below -- holding log-probabilities SUMMED over the
completion tokens; `*_avg_logps` are the per-token averages (sum / completion length), used by
the objectives that length-normalise. `loss_type` is a Python string (static under `jax.jit`);
the hyper-parameters may be Python numbers or traced scalars.

Notation: pc, pr = policy chosen / rejected log-probs, rc, rr = the frozen reference's,
c = pc - rc and r = pr - rr the log ratios, h = c - r = (pc - pr) - (rc - rr), ac / ar the
policy's per-token average log-probs, ls = log sigmoid, s = sigmoid, eps = label_smoothing.

| loss_type | per-pair loss | source |
|---|---|---|
| `sigmoid` | -(1-eps) ls(beta h) - eps ls(-beta h); eps > 0 is cDPO | DPO, Rafailov 2023 |
| `robust` | ((1-eps) (-ls(beta h)) - eps (-ls(-beta h))) / (1-2 eps) | rDPO, Chowdhury 2024 |
| `hinge` | relu(1 - beta h) | SLiC, Zhao 2023 |
| `ipo` | (h - 1/(2 beta))^2 (see "IPO" below) | IPO, Azar 2023 |
| `bco_pair` | -ls(beta c - delta) - ls(-(beta r - delta)) | BCO, Jung 2024 |
| `nca_pair` | -ls(beta c) - ls(-beta c)/2 - ls(-beta r)/2 | NCA, Chen 2024 |
| `sppo_hard` | (c - 1/(2 beta))^2 + (r + 1/(2 beta))^2 | SPPO, Wu 2024 |
| `apo_zero` | 1 - s(beta c) + s(beta r) | APO, D'Oosterlinck 2024 |
| `apo_down` | s(beta c) + 1 - s(beta (c - r)) | APO, D'Oosterlinck 2024 |
| `exo_pair` | KL(Bern(s(beta h)), Bern(1-eps)), eps = 1e-3 if 0 (below) | EXO, Ji 2024 |
| `simpo` | -(1-eps) ls(z) - eps ls(-z), z = beta (ac - ar) - gamma | SimPO, Meng 2024 |
| `orpo` | chosen_nll - beta ls(log odds(ac) - log odds(ar)) | ORPO, Hong 2024 |
| `kto` | dw (1 - s(beta (c - z0))) + uw (1 - s(beta (z0 - r))) | KTO, Ethayarajh 2024 |
| `npo` | -(2/beta) ls(-beta r); chosen inputs ignored | NPO, Zhang 2024 |

`exo_pair` written out: s(beta h) (ls(beta h) - log(1-eps)) + s(-beta h) (ls(-beta h) - log eps).
`simpo` and `orpo` are reference-free (`REFERENCE_FREE`); the rest need the reference log-probs.

Conventions (TRL's DPOTrainer / CPOTrainer / ORPOTrainer / KTOTrainer where they exist):

* Rewards: `chosen_rewards = beta * (pc - rc)`, `rejected_rewards = beta * (pr - rr)`, computed
  from the log-probs the loss used and stop-gradient. For the reference-free `simpo` and `orpo`
  the reference terms are zero and the policy log-probs are the per-token averages, so the
  rewards are `beta * ac`, `beta * ar` (TRL's CPO / ORPO trainers). For `npo` (which sees no
  chosen completion) `chosen_rewards` is zero.
* IPO: TRL divides all four log-probs by the completion length before the IPO loss. Pass all
  four averages (`chosen_avg_logps`, `rejected_avg_logps`, `ref_chosen_avg_logps`,
  `ref_rejected_avg_logps`) to get that; otherwise -- including when only the two policy
  averages are given, as a caller serving every type at once does -- the summed positional
  log-probs are used for all four (the paper's form; or pass averages positionally), never a
  mix of averaged and summed terms.
* SimPO: `gamma` is the paper's target margin gamma (TRL's `simpo_gamma` is gamma / beta, so
  pass `gamma = beta * simpo_gamma` to reproduce a TRL run). Requires the two policy averages.
* ORPO: lambda = `beta` as in TRL. `chosen_nll` is the chosen completion's per-token average
  negative log-likelihood; if None it defaults to `-chosen_avg_logps` (TRL averages the NLL
  over all tokens of the batch instead; pass `chosen_nll` to reproduce that). The log odds
  use a stable log(1 - exp(x)), finite for averages from about -1e-7 (clamped there: the
  odds of a probability-one completion are infinite) down to very negative values.
* BCO: `delta` is the running mean of the rewards (TRL's RunningMoments), passed in by the
  caller; if None it is the stop-gradient mean of this batch's chosen and rejected rewards,
  over the pairs where `mask` is nonzero (all pairs if `mask` is None). Only this default and
  KTO's `kl` reduce over the batch, so under `vmap` the batch statistic is per mapped slice.
* KTO: unpaired data; the chosen arrays are desirable examples, the rejected arrays undesirable
  ones, and the per-pair loss is the sum of the two weighted terms. `kl` is the caller's
  estimate of KL(policy || reference) (TRL: the mean over mismatched prompt/completion pairs);
  z0 = stop_gradient(max(mean(kl), 0)), 0 when `kl` is None.
* SFT term: `sft_weight * chosen_nll` is added to every pair's loss when `sft_weight` is not a
  literal 0 (TRL's `rpo_alpha`; for `orpo` this comes on top of its own NLL term). `chosen_nll`
  defaults to `-chosen_avg_logps` as for ORPO; `sft_term(chosen_nll, weight)` is the same
  term on its own, for callers that add it themselves.

`preference_metrics(out, chosen_logps, rejected_logps, mask)` gives TRL's metric names as masked
means over the real pairs.
"""
from __future__ import annotations

import math
from numbers import Real

import jax
import jax.numpy as jnp

LOSS_TYPES = ('sigmoid', 'robust', 'hinge', 'ipo', 'bco_pair', 'nca_pair', 'sppo_hard',
              'apo_zero', 'apo_down', 'exo_pair', 'simpo', 'orpo', 'kto', 'npo')
REFERENCE_FREE = ('simpo', 'orpo')

_EXO_DEFAULT_EPS = 1e-3
_LOG_HALF = -math.log(2.0)


def _concrete(x) -> bool:
  """True for a Python number (not a traced or array value), whose range can be checked now."""
  return isinstance(x, Real) and not isinstance(x, bool)


def _check(condition: bool, message: str):
  if not condition:
    raise ValueError(message)


def _log1mexp(x):
  """log(1 - exp(x)) for x <= 0, stable at both ends, with finite gradients everywhere.

  log(-expm1(x)) is accurate for x near 0, log1p(-exp(x)) for x << 0 (Maechler 2012). x is
  clamped to at most -eps of its dtype, so a probability-one input gives a large finite value.
  Each branch sees only inputs on its own side, so the unused branch's gradient is finite too.
  """
  x = jnp.minimum(x, -jnp.finfo(x.dtype).eps)
  near_zero = x > _LOG_HALF
  small = jnp.log(-jnp.expm1(jnp.where(near_zero, x, _LOG_HALF)))
  large = jnp.log1p(-jnp.exp(jnp.where(near_zero, _LOG_HALF, x)))
  return jnp.where(near_zero, small, large)


def _masked_mean(x, mask):
  x = jnp.asarray(x)
  if mask is None:
    return jnp.mean(x)
  keep = jnp.broadcast_to(jnp.asarray(mask) > 0, x.shape)
  total = jnp.sum(jnp.where(keep, x, 0.0))
  return total / jnp.maximum(jnp.sum(keep), 1).astype(total.dtype)


def masked_mean(x, mask=None):
  """Mean of `x` over the entries where `mask` is nonzero (0 when there are none).

  Dropped entries are excluded with `where`, so NaN or inf in padded pairs does not leak in.
  """
  return _masked_mean(x, mask)


def sft_term(chosen_nll, weight):
  """The weighted SFT term `weight * chosen_nll` (per pair), to add to any preference loss."""
  return weight * jnp.asarray(chosen_nll)


def _default_nll(chosen_nll, chosen_avg_logps, why: str):
  if chosen_nll is not None:
    return jnp.asarray(chosen_nll)
  _check(chosen_avg_logps is not None,
         f'{why} needs chosen_nll (or chosen_avg_logps, whose negation is used)')
  return -jnp.asarray(chosen_avg_logps)


def preference_loss(loss_type, chosen_logps, rejected_logps, ref_chosen_logps=None,
                    ref_rejected_logps=None, *, beta, label_smoothing=0.0, gamma=0.0,
                    chosen_avg_logps=None, rejected_avg_logps=None, ref_chosen_avg_logps=None,
                    ref_rejected_avg_logps=None, chosen_nll=None, kl=None, delta=None,
                    desirable_weight=1.0, undesirable_weight=1.0, sft_weight=0.0, mask=None):
  """Per-pair preference loss and implicit rewards; see the module docstring for every type.

  Args:
    loss_type: one of `LOSS_TYPES` (a Python string; static under jit).
    chosen_logps, rejected_logps: policy log-probs of the completions, summed over tokens.
    ref_chosen_logps, ref_rejected_logps: the frozen reference's; may be None only for the
      reference-free types `REFERENCE_FREE`.
    beta: the temperature / regularisation strength (lambda for `orpo`, tau for `ipo`).
    label_smoothing: eps of `sigmoid` (cDPO), `robust`, `simpo`; the eps of `exo_pair`
      (1e-3 when 0, as in TRL).
    gamma: SimPO's target margin.
    chosen_avg_logps, rejected_avg_logps: per-token average policy log-probs (`simpo`,
      `orpo`; `ipo` with the next two); ref_chosen_avg_logps, ref_rejected_avg_logps: the
      reference's (`ipo` uses the averages only when all four are given).
    chosen_nll: per-token average NLL of the chosen completion (`orpo`, and the SFT term).
    kl: KTO's KL estimate (scalar or array, averaged); None means 0.
    delta: BCO's reward shift (running mean of rewards); None means the batch mean.
    desirable_weight, undesirable_weight: KTO's class weights.
    sft_weight: weight of the SFT term `sft_weight * chosen_nll` added to every loss.
    mask: which pairs are real, used only for BCO's default delta.

  Returns:
    dict with `losses`, `chosen_rewards`, `rejected_rewards`, each of the inputs' shape.

  Raises:
    ValueError: unknown `loss_type`, or an input the chosen type needs is missing, or a
      concrete hyper-parameter is out of range.
  """
  if not isinstance(loss_type, str) or loss_type not in LOSS_TYPES:
    raise ValueError(f'unknown preference loss_type {loss_type!r}; known loss types: '
                     f'{", ".join(LOSS_TYPES)}')
  if _concrete(beta):
    _check(beta > 0, f'{loss_type}: beta must be positive, got {beta}')
  eps = label_smoothing
  pc = jnp.asarray(chosen_logps)
  pr = jnp.asarray(rejected_logps)

  if loss_type in REFERENCE_FREE:
    _check(chosen_avg_logps is not None and rejected_avg_logps is not None,
           f'{loss_type} is length-normalised: it needs chosen_avg_logps and '
           'rejected_avg_logps (per-token average log-probs)')
    ac = jnp.asarray(chosen_avg_logps)
    ar = jnp.asarray(rejected_avg_logps)
    chosen_rewards, rejected_rewards = beta * ac, beta * ar
    if loss_type == 'simpo':
      if _concrete(eps):
        _check(0.0 <= eps <= 0.5, f'simpo: label_smoothing must be in [0, 0.5], got {eps}')
      z = beta * (ac - ar) - gamma
      losses = -(1.0 - eps) * jax.nn.log_sigmoid(z) - eps * jax.nn.log_sigmoid(-z)
    else:  # orpo
      nll = _default_nll(chosen_nll, ac, 'orpo')
      log_odds = (ac - ar) - (_log1mexp(ac) - _log1mexp(ar))
      losses = nll - beta * jax.nn.log_sigmoid(log_odds)
  else:
    _check(ref_chosen_logps is not None and ref_rejected_logps is not None,
           f'{loss_type} needs ref_chosen_logps and ref_rejected_logps '
           f'(only {", ".join(REFERENCE_FREE)} are reference-free)')
    rc = jnp.asarray(ref_chosen_logps)
    rr = jnp.asarray(ref_rejected_logps)
    if loss_type == 'ipo':
      averages = (chosen_avg_logps, rejected_avg_logps, ref_chosen_avg_logps,
                  ref_rejected_avg_logps)
      if all(a is not None for a in averages):
        pc, pr, rc, rr = (jnp.asarray(a) for a in averages)
    c = pc - rc  # chosen log ratio
    r = pr - rr  # rejected log ratio
    h = c - r
    chosen_rewards, rejected_rewards = beta * c, beta * r

    if loss_type == 'sigmoid':
      if _concrete(eps):
        _check(0.0 <= eps <= 0.5, f'sigmoid: label_smoothing must be in [0, 0.5], got {eps}')
      losses = -(1.0 - eps) * jax.nn.log_sigmoid(beta * h) - eps * jax.nn.log_sigmoid(-beta * h)
    elif loss_type == 'robust':
      if _concrete(eps):
        _check(0.0 <= eps < 0.5, f'robust: label_smoothing must be in [0, 0.5), got {eps}')
      losses = ((1.0 - eps) * -jax.nn.log_sigmoid(beta * h)
                - eps * -jax.nn.log_sigmoid(-beta * h)) / (1.0 - 2.0 * eps)
    elif loss_type == 'hinge':
      losses = jax.nn.relu(1.0 - beta * h)
    elif loss_type == 'ipo':
      losses = jnp.square(h - 1.0 / (2.0 * beta))
    elif loss_type == 'bco_pair':
      if delta is None:
        both = jnp.stack([chosen_rewards, rejected_rewards])
        both_mask = None if mask is None else jnp.stack([jnp.asarray(mask)] * 2)
        delta = _masked_mean(both, both_mask)
      delta = jax.lax.stop_gradient(delta)
      losses = (-jax.nn.log_sigmoid(chosen_rewards - delta)
                - jax.nn.log_sigmoid(-(rejected_rewards - delta)))
    elif loss_type == 'nca_pair':
      losses = (-jax.nn.log_sigmoid(chosen_rewards) - 0.5 * jax.nn.log_sigmoid(-chosen_rewards)
                - 0.5 * jax.nn.log_sigmoid(-rejected_rewards))
    elif loss_type == 'sppo_hard':
      losses = jnp.square(c - 0.5 / beta) + jnp.square(r + 0.5 / beta)
    elif loss_type == 'apo_zero':
      losses = (1.0 - jax.nn.sigmoid(beta * c)) + jax.nn.sigmoid(beta * r)
    elif loss_type == 'apo_down':
      losses = jax.nn.sigmoid(beta * c) + (1.0 - jax.nn.sigmoid(beta * h))
    elif loss_type == 'exo_pair':
      if _concrete(eps):
        _check(0.0 <= eps < 1.0, f'exo_pair: label_smoothing must be in [0, 1), got {eps}')
      eps = jnp.where(jnp.asarray(eps) == 0, _EXO_DEFAULT_EPS, eps)
      z = beta * h
      losses = (jax.nn.sigmoid(z) * (jax.nn.log_sigmoid(z) - jnp.log1p(-eps))
                + jax.nn.sigmoid(-z) * (jax.nn.log_sigmoid(-z) - jnp.log(eps)))
    elif loss_type == 'kto':
      z0 = jnp.zeros((), h.dtype) if kl is None else jnp.mean(jnp.asarray(kl))
      z0 = jax.lax.stop_gradient(jnp.maximum(z0, 0.0))
      losses = (desirable_weight * (1.0 - jax.nn.sigmoid(beta * (c - z0)))
                + undesirable_weight * (1.0 - jax.nn.sigmoid(beta * (z0 - r))))
    elif loss_type == 'npo':
      losses = -(2.0 / beta) * jax.nn.log_sigmoid(-beta * r)
      chosen_rewards = jnp.zeros_like(rejected_rewards)
    else:  # pragma: no cover - LOSS_TYPES and the branches above are kept in step
      raise AssertionError(loss_type)

  if not (_concrete(sft_weight) and sft_weight == 0):
    losses = losses + sft_term(_default_nll(chosen_nll, chosen_avg_logps, 'the SFT term'),
                               sft_weight)
  return {
      'losses': losses,
      'chosen_rewards': jax.lax.stop_gradient(chosen_rewards),
      'rejected_rewards': jax.lax.stop_gradient(rejected_rewards),
  }


def preference_metrics(out, chosen_logps, rejected_logps, mask=None):
  """TRL's logged metrics as means over the real pairs (`mask` nonzero; None: all pairs).

  `out` is `preference_loss`'s result; `chosen_logps` / `rejected_logps` the policy log-probs
  (summed, as TRL logs them). Returns scalars `rewards/chosen`, `rewards/rejected`,
  `rewards/accuracies` (fraction with chosen reward > rejected reward), `rewards/margins`,
  `logps/chosen`, `logps/rejected`.
  """
  chosen_rewards = out['chosen_rewards']
  rejected_rewards = out['rejected_rewards']
  accuracies = (chosen_rewards > rejected_rewards).astype(jnp.result_type(chosen_rewards))
  return {
      'rewards/chosen': _masked_mean(chosen_rewards, mask),
      'rewards/rejected': _masked_mean(rejected_rewards, mask),
      'rewards/accuracies': _masked_mean(accuracies, mask),
      'rewards/margins': _masked_mean(chosen_rewards - rejected_rewards, mask),
      'logps/chosen': _masked_mean(jax.lax.stop_gradient(jnp.asarray(chosen_logps)), mask),
      'logps/rejected': _masked_mean(jax.lax.stop_gradient(jnp.asarray(rejected_logps)), mask),
  }
