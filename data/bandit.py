"""Exact didactic preference problems: the bandit of Tajwar et al. (2024) and a non-transitive
game for Nash learning from human feedback (Munos et al. 2024). Pure, jittable functions on
categorical policies given as logits; rewards, KL and win rates are exact.

1. The didactic bandit ("Preference Fine-Tuning of LLMs Should Leverage Suboptimal, On-Policy
   Data", Tajwar et al. 2024, Sec. on didactic bandit problems). What this module takes from the
   authors' public code (reward_functions.py, utils.py, the transformer bandit script):
   * a vocabulary of 100 actions (tokens 0 .. 99);
   * the reference policy pi_ref is `ContinuousSampledCategorical(SquashedCauchy(loc=-0.7,
     scale=0.4), low=-1, high=1, num_bins=100)`: tanh of a Cauchy variable, histogrammed into
     100 equal bins of [-1, 1]. The authors estimate the histogram from 10,000 samples; here
     the bin probabilities are exact: P(bin k) = F(atanh(e_{k+1})) - F(atanh(e_k)) with F the
     Cauchy CDF and e_k = -1 + 2k/100 (atanh(+-1) = +-inf, so the Cauchy tails land in the edge
     bins, as tanh saturating to +-1 does in their sampler). The interior mode is token 16
     (token 15 is within 0.4% of it: "peaked at 15"); the heavy tails put 7.8% on token 0
     and 4.2% on token 99. `bump_probs` gives a plain discretised Gaussian bump instead if
     edge mass is unwanted;
   * the rewards: r(a) = exp(-((a - c) / w)^2) with w = 10 (the authors' width) and c = 70
     (`FAR_CENTER`, the optimum in a low-probability region of pi_ref: "reward_4"/"reward_6")
     or c = 20 (`NEAR_CENTER`, near pi_ref's mode: "reward_5"/"reward_7");
   * the multi-token ("transformer") setting: a response is a sequence of tokens and its
     reward is the MEAN over positions of r(token) (their reward_6/7). The number of tokens
     (`NUM_TOKENS` = 9, as the project's issue states; not checked against the paper) is a
     parameter. Here a policy is L independent per-position categoricals (logits [L, V], or
     [V] for the same one at every position): tokens are sampled independently, so the
     expected reward (mean of the per-position expectations) and KL(pi || pi_ref) (sum of
     per-position KLs) are exact. L = 1 is the single-token ("1-d discrete") bandit. The
     authors' policy is a GPT (autoregressive); a factorised policy is the special case whose
     exact quantities are closed forms.
   Preferences are Bradley-Terry on the reward (`preference_prob`, data/judges.py labels).

2. Nash learning from human feedback (Munos et al., ICML 2024), on a categorical policy over
   C = 3 classes with the cyclic (rock-paper-scissors) preference of
   data/judges.py `cyclic_preference_matrix` (class i beats i + 1 mod 3 with probability p):
   * P(y > pi) = sum_y' pi(y') P(y > y'); P(pi > pi') = pi^T P pi'. The Nash equilibrium of the
     symmetric zero-sum game with payoff P(pi > pi') - 1/2 is `nash_equilibrium_3` (uniform for
     symmetric p).
   * Nash-MD (their Sec. 5): with the geometric mixture ("regularised policy")
         pi_t^mu(y) ∝ pi_t(y)^(1 - eta tau) mu(y)^(eta tau),
     the update is  pi_{t+1} = argmax_pi [eta P(pi > pi_t^mu) - KL(pi, pi_t^mu)], i.e.
         pi_{t+1}(y) ∝ pi_t^mu(y) exp(eta P(y > pi_t^mu)),
     mu the reference policy, tau the KL-regularisation of the game
     P(pi > pi') - tau KL(pi, mu) + tau KL(pi', mu). Its last iterate converges to the
     regularised Nash equilibrium (their Theorem 1, for a small enough eta); with mu uniform
     and symmetric p that equilibrium is uniform, the unregularised one.
   * The Bradley-Terry route: fit a reward to the preferences (`bt_fit`, least squares on the
     logits, weighted by how often on-policy pairs meet) and ascend it (`bt_reward_step`). A
     non-transitive preference has no BT reward (`bt_fit_residual` > 0), and the on-policy fit
     always rewards the class that beats the current favourite, so this dynamics cycles.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from data.judges import bradley_terry_prob

VOCAB_SIZE = 100
NUM_TOKENS = 9
REFERENCE_LOC = -0.7      # pre-tanh Cauchy location (authors)
REFERENCE_SCALE = 0.4     # Cauchy scale (authors)
FAR_CENTER = 70.0         # reward optimum far from the reference's mode
NEAR_CENTER = 20.0        # reward optimum near the reference's mode
REWARD_WIDTH = 10.0       # the authors' width: exp(-((a - c) / 10)^2)


# ---------------------------------------------------------------------------------------------
# The didactic bandit
# ---------------------------------------------------------------------------------------------

def reference_probs(vocab_size: int = VOCAB_SIZE, loc: float = REFERENCE_LOC,
                    scale: float = REFERENCE_SCALE) -> jax.Array:
  """float32[V]: exact bin probabilities of tanh(Cauchy(loc, scale)) in V equal bins of
  [-1, 1] (the authors' reference policy; module docstring)."""
  edges = np.linspace(-1.0, 1.0, vocab_size + 1)
  with np.errstate(divide='ignore'):
    pre = np.arctanh(edges)                      # -inf .. +inf at the ends
  cdf = 0.5 + np.arctan((pre - loc) / scale) / math.pi
  probs = np.diff(cdf)
  return jnp.asarray(probs / probs.sum(), jnp.float32)


def reference_logits(vocab_size: int = VOCAB_SIZE, num_tokens: int = 0, **kwargs) -> jax.Array:
  """log `reference_probs`: [V], or [num_tokens, V] (the same at every position) if
  num_tokens > 0."""
  logits = jnp.log(reference_probs(vocab_size, **kwargs))
  return jnp.tile(logits, (num_tokens, 1)) if num_tokens else logits


def bump_probs(center: float, width: float, vocab_size: int = VOCAB_SIZE) -> jax.Array:
  """float32[V]: a discretised Gaussian bump ∝ exp(-((a - center) / width)^2)."""
  return jax.nn.softmax(-jnp.square((jnp.arange(vocab_size) - center) / width))


def reward_table(center: float = FAR_CENTER, width: float = REWARD_WIDTH,
                 vocab_size: int = VOCAB_SIZE) -> jax.Array:
  """float32[V]: r(a) = exp(-((a - center) / width)^2), the authors' bandit reward (max 1)."""
  return jnp.exp(-jnp.square((jnp.arange(vocab_size, dtype=jnp.float32) - center) / width))


def _per_position(logits) -> jax.Array:
  logits = jnp.asarray(logits, jnp.float32)
  return logits[None] if logits.ndim == 1 else logits


def sample(key, logits, batch_size: int, num_tokens: int = NUM_TOKENS) -> jax.Array:
  """int32[B, L]: tokens drawn independently per position; logits [L, V] (L positions) or [V]
  (the same categorical at each of `num_tokens` positions)."""
  logits = jnp.asarray(logits, jnp.float32)
  if logits.ndim == 1:
    logits = jnp.broadcast_to(logits, (num_tokens, logits.shape[0]))
  return jax.random.categorical(key, logits, shape=(batch_size,) + logits.shape[:1]).astype(
      jnp.int32)


def log_prob(tokens_BxL, logits) -> jax.Array:
  """float32[B]: log-probability of each response under the factorised policy."""
  log_p = jax.nn.log_softmax(_per_position(logits))
  log_p = jnp.broadcast_to(log_p, (tokens_BxL.shape[-1], log_p.shape[-1]))
  return jnp.sum(jnp.take_along_axis(log_p[None], tokens_BxL[..., None], -1)[..., 0], -1)


def sequence_reward(tokens_BxL, table_V) -> jax.Array:
  """float32[B]: the mean over positions of r(token) (the authors' multi-token reward)."""
  return jnp.mean(table_V[tokens_BxL], axis=-1)


def expected_reward(logits, table_V, num_tokens: int = NUM_TOKENS) -> jax.Array:
  """Exact E_pi[sequence_reward]: the mean over positions of sum_a pi_l(a) r(a) (a [V] policy
  is the same at every position, so `num_tokens` does not matter for it)."""
  del num_tokens
  probs = jax.nn.softmax(_per_position(logits))
  return jnp.mean(probs @ table_V)


def kl_divergence(logits, ref_logits, num_tokens: int = NUM_TOKENS) -> jax.Array:
  """Exact KL(pi || pi_ref) of the factorised response distributions: the sum over positions
  of the per-position KLs (a [V] policy counts num_tokens times)."""
  log_p = jax.nn.log_softmax(_per_position(logits))
  log_q = jax.nn.log_softmax(_per_position(ref_logits))
  length = max(log_p.shape[0], log_q.shape[0])
  if length == 1:
    length = num_tokens
  per = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
  return jnp.sum(jnp.broadcast_to(per, (length,)) if per.shape[0] == 1 else per)


def optimal_policy_logits(ref_logits, table_V, beta: float,
                          num_tokens: int = NUM_TOKENS) -> jax.Array:
  """The maximiser of E_pi[r] - beta KL(pi || pi_ref): pi*(y) ∝ pi_ref(y) exp(r(y) / beta).
  With r the mean over L positions it factorises: pi*_l(a) ∝ pi_ref_l(a) exp(r(a) / (L beta))."""
  ref = _per_position(ref_logits)
  length = num_tokens if ref.shape[0] == 1 else ref.shape[0]
  return jax.nn.log_softmax(ref + table_V / (length * beta), axis=-1)


def preference_prob(tokens_a_BxL, tokens_b_BxL, table_V, temperature: float = 1.0):
  """Bradley-Terry P(a preferred to b) = sigmoid((r(a) - r(b)) / temperature)."""
  return bradley_terry_prob(sequence_reward(tokens_a_BxL, table_V),
                            sequence_reward(tokens_b_BxL, table_V), temperature)


# ---------------------------------------------------------------------------------------------
# Non-transitive preferences: Nash-MD vs a Bradley-Terry reward
# ---------------------------------------------------------------------------------------------

def nash_equilibrium_3(pref_3x3) -> jax.Array:
  """The Nash equilibrium of the symmetric game with payoff P - 1/2 (P + P^T = 1) over 3
  classes. A = P - 1/2 is antisymmetric; its null vector is (A12, A20, A01), a distribution
  when the three have one sign (a cycle). Otherwise a class beats or ties both others (a
  Condorcet winner) and the equilibrium is pure on it."""
  a = jnp.asarray(pref_3x3, jnp.float32) - 0.5
  v = jnp.stack([a[1, 2], a[2, 0], a[0, 1]])
  cyclic = jnp.all(v > 0) | jnp.all(v < 0)
  mixed = v / jnp.sum(v)
  winner = jnp.argmax(jnp.all(a >= 0, axis=1))
  return jnp.where(cyclic, mixed, jax.nn.one_hot(winner, 3))


def win_rate(pi, pref_CxC, pi_other) -> jax.Array:
  """Exact P(pi > pi_other) = pi^T P pi_other."""
  return pi @ pref_CxC @ pi_other


def geometric_mixture(logits, mu_logits, beta) -> jax.Array:
  """log pi^mu with pi^mu ∝ pi^(1 - beta) mu^beta (normalised log-probabilities)."""
  return jax.nn.log_softmax((1.0 - beta) * jax.nn.log_softmax(logits)
                            + beta * jax.nn.log_softmax(mu_logits))


def nash_md_step(logits, mu_logits, pref_CxC, eta: float, tau: float) -> jax.Array:
  """One exact Nash-MD update (Munos et al.): log pi_{t+1} =
  log pi_t^mu + eta P(. > pi_t^mu) - log Z, with pi_t^mu the geometric mixture of mixing
  eta * tau."""
  mix = geometric_mixture(logits, mu_logits, eta * tau)
  return jax.nn.log_softmax(mix + eta * (pref_CxC @ jnp.exp(mix)))


def nash_md(logits, mu_logits, pref_CxC, eta: float, tau: float, num_steps: int):
  """num_steps Nash-MD updates; returns (final log-probs, probabilities after each step
  [num_steps, C])."""
  def body(lg, _):
    new = nash_md_step(lg, mu_logits, pref_CxC, eta, tau)
    return new, jnp.exp(new)
  return jax.lax.scan(body, jax.nn.log_softmax(jnp.asarray(logits, jnp.float32)), None,
                      length=num_steps)


def bt_fit(pref_CxC, weights_CxC=None) -> jax.Array:
  """The Bradley-Terry reward fitted by weighted least squares on the logits:
  argmin_r sum_{i != j} w_ij (r_i - r_j - logit P_ij)^2, minimum-norm (sum r = 0). With on-
  policy weights w = pi pi^T this is the reward a BT model learns from pairs drawn from pi."""
  pref = jnp.clip(jnp.asarray(pref_CxC, jnp.float32), 1e-6, 1 - 1e-6)
  num = pref.shape[0]
  w = jnp.ones((num, num)) if weights_CxC is None else jnp.asarray(weights_CxC, jnp.float32)
  w = w * (1.0 - jnp.eye(num))
  target = jnp.log(pref) - jnp.log1p(-pref)
  # Normal equations: (D - W_sym) r = b, a weighted graph Laplacian.
  w_sym = w + w.T
  laplacian = jnp.diag(jnp.sum(w_sym, axis=1)) - w_sym
  b = jnp.sum(w * target - w.T * target.T, axis=1)
  r = jnp.linalg.pinv(laplacian + 1.0 / num) @ b    # + 1/num * 11^T pins sum(r) = 0
  return r - jnp.mean(r)


def bt_fit_residual(pref_CxC, key=None, num_starts: int = 16, num_steps: int = 2000,
                    learning_rate: float = 0.5):
  """(min over r of sum_{i != j} (sigmoid(r_i - r_j) - P_ij)^2, the best r): how far the
  preference is from any Bradley-Terry model, fitted in probability space by gradient descent
  from `num_starts` random starts (0 iff a BT reward represents P). For the 3-class cycle with
  P(i > i+1) = p > 1/2 it is >= 2 (p - 1/2)^2: the three cyclic differences sum to 0, so one is
  <= 0 and that pair (both orders) is off by >= p - 1/2."""
  pref = jnp.asarray(pref_CxC, jnp.float32)
  num = pref.shape[0]
  off = 1.0 - jnp.eye(num)
  key = jax.random.key(0) if key is None else key

  def loss(r):
    return jnp.sum(off * jnp.square(jax.nn.sigmoid(r[:, None] - r[None, :]) - pref))

  def descend(r0):
    def body(r, _):
      return r - learning_rate * jax.grad(loss)(r), None
    r, _ = jax.lax.scan(body, r0, None, length=num_steps)
    return loss(r), r

  starts = 3.0 * jax.random.normal(key, (num_starts, num))
  losses, rs = jax.vmap(descend)(starts)
  best = jnp.argmin(losses)
  return losses[best], rs[best]


def bt_reward_step(logits, pref_CxC, eta: float) -> jax.Array:
  """One step of the Bradley-Terry route: fit the BT reward to pairs drawn from pi
  (`bt_fit` with weights pi pi^T) and take a mirror-ascent step on it,
  log pi_{t+1} = log pi_t + eta r - log Z."""
  log_p = jax.nn.log_softmax(logits)
  probs = jnp.exp(log_p)
  reward = bt_fit(pref_CxC, probs[:, None] * probs[None, :])
  return jax.nn.log_softmax(log_p + eta * reward)


def bt_reward_dynamics(logits, pref_CxC, eta: float, num_steps: int):
  """num_steps `bt_reward_step`s: (final log-probs, probabilities after each step)."""
  def body(lg, _):
    new = bt_reward_step(lg, pref_CxC, eta)
    return new, jnp.exp(new)
  return jax.lax.scan(body, jax.nn.log_softmax(jnp.asarray(logits, jnp.float32)), None,
                      length=num_steps)
