"""In-context n-gram baselines against direct counting, and the n-gram head against a loop."""
from collections import Counter

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from baselines import ngram
from models.mixers import MIXERS, MixerSpec

V = 4
SEP = V + 1
K = V + 2
BOS = 'bos'
END = 'end'


def reference_probs(tokens, n, delta, predict_separator):
  """Direct count-based version of the scheme in baselines/ngram.py, one position at a time."""
  sigma = list(range(1, V + 1)) + ([SEP] if predict_separator else [])
  out = []
  for t in range(len(tokens)):
    prefix = [int(x) for x in tokens[:t + 1]]
    strings, current = [], []
    for x in prefix:
      if x == SEP:
        strings.append(current)
        current = []
      else:
        current.append(x)
    # Slots: (string, position, token); the end slot of a finished string has token END,
    # the open slot of the current string token None.
    slots = []
    for s in strings:
      slots += [(s, i, s[i]) for i in range(len(s))] + [(s, len(s), END)]
    slots += [(current, i, current[i]) for i in range(len(current))]
    open_slot = (current, len(current), None)
    slots_with_open = slots + [open_slot]

    def ctx(slot, m):
      s, i, _ = slot
      padded = [BOS] * m + list(s[:i])
      return tuple(padded[len(padded) - m:]) if m else ()

    def label(token):
      if token == END:
        return SEP if predict_separator else None
      return token

    probs = None
    for k in range(1, n + 1):
      m = k - 1
      h = ctx(open_slot, m)
      counts = Counter(label(tok) for slot in slots if ctx(slot, m) == h
                       for tok in [slot[2]])
      if k == 1:
        total = sum(counts[a] + delta for a in sigma)
        probs = ({a: (counts[a] + delta) / total for a in sigma} if total > 0
                 else {a: 1 / len(sigma) for a in sigma})
        continue
      n_h = sum(1 for slot in slots_with_open if ctx(slot, m) == h)
      seen = {a: (counts[a] + delta) / (n_h + delta * len(sigma)) for a in sigma if counts[a] > 0}
      beta = 1 - sum(seen.values())
      unseen_mass = sum(probs[a] for a in sigma if a not in seen)
      probs = {a: seen[a] if a in seen else
               (beta * probs[a] / unseen_mass if unseen_mass > 0 else 0.0) for a in sigma}
    total = sum(probs.values())
    row = np.zeros(K)
    for a in sigma:
      row[a] = probs[a] / total
    out.append(row)
  return np.array(out)


def random_tokens(seed, batch=3, length=30):
  rng = np.random.default_rng(seed)
  # A small alphabet so contexts repeat; separators now and then; one row padded at the end.
  tokens = rng.choice([1, 2, 3, SEP], p=[0.35, 0.3, 0.2, 0.15], size=(batch, length))
  tokens[-1, length - 5:] = 0
  return tokens.astype(np.int32)


@pytest.mark.parametrize('n', [1, 2, 3])
@pytest.mark.parametrize('delta', [0.0, 0.5])
@pytest.mark.parametrize('predict_separator', [False, True])
def test_ngram_matches_direct_counts(n, delta, predict_separator):
  tokens = random_tokens(n + int(10 * delta) + 7 * predict_separator)
  got = np.asarray(ngram.ngram_probs(jnp.asarray(tokens), n=n, vocab_size=V, delta=delta,
                                     predict_separator=predict_separator))
  assert got.shape == tokens.shape + (K,)
  for b in range(tokens.shape[0]):
    real = int(np.sum(tokens[b] != 0))  # compare before the padding
    expected = reference_probs(tokens[b, :real], n, delta, predict_separator)
    np.testing.assert_allclose(got[b, :real], expected, atol=1e-5)
  np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
  if delta == 0:
    # Unseen symbols get nothing: symbol 4 never occurs.
    assert np.all(got[..., 4] == 0)


def test_ngram_is_causal_and_orders_agree():
  tokens = random_tokens(11)
  probs = np.asarray(ngram.ngram_probs(jnp.asarray(tokens), n=3, vocab_size=V))
  changed = tokens.copy()
  changed[:, 16:] = np.roll(changed[:, 16:], 3, axis=1)
  probs2 = np.asarray(ngram.ngram_probs(jnp.asarray(changed), n=3, vocab_size=V))
  np.testing.assert_allclose(probs[:, :16], probs2[:, :16], atol=1e-6)
  assert not np.allclose(probs[:, 16:], probs2[:, 16:])
  by_order = ngram.ngram_probs_by_order(jnp.asarray(tokens), n=3, vocab_size=V)
  for k in (1, 2):
    np.testing.assert_allclose(by_order[k - 1],
                               ngram.ngram_probs(jnp.asarray(tokens), n=k, vocab_size=V),
                               atol=1e-6)


# ---- the hard-wired n-gram head ---------------------------------------------------------

def make_head(n, d_model=8, max_len=16):
  spec = MixerSpec(d_model=d_model, num_heads=1, max_len=max_len, position='none')
  options = ml_collections.ConfigDict({'n': n})
  return MIXERS['ngram_head'](spec, options, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('n', [1, 2, 3, 4])
def test_ngram_head_matches_loop(n):
  head = make_head(n)
  rng = np.random.default_rng(n)
  tokens = rng.integers(0, 3 if n < 3 else 2, size=(2, 16)).astype(np.int32)
  x = rng.normal(size=(2, 16, 8)).astype(np.float32)
  got = np.asarray(head(jnp.asarray(x), tokens_BxT=jnp.asarray(tokens)))
  w_read, b_read = np.asarray(head.read.kernel[...]), np.asarray(head.read.bias[...])
  w_skip, b_skip = np.asarray(head.skip.kernel[...]), np.asarray(head.skip.bias[...])
  matched_any = 0
  for b in range(2):
    for t in range(16):
      # j < t whose n - 1 preceding tokens equal the n - 1 tokens ending at t.
      matches = [j for j in range(t) if t >= n - 2 and j >= n - 1 and
                 all(tokens[b, j - 1 - d] == tokens[b, t - d] for d in range(n - 1))]
      read = x[b, matches].mean(0) if matches else np.zeros(8, np.float32)
      matched_any += bool(matches)
      expected = read @ w_read + b_read + x[b, t] @ w_skip + b_skip
      np.testing.assert_allclose(got[b, t], expected, atol=1e-5)
  assert matched_any > 4


def test_ngram_head_reads_the_in_context_ngram_distribution():
  # With one-hot token embeddings, the averaged read is the empirical distribution of the token
  # that followed earlier occurrences of the current (n-1)-token context.
  head = make_head(3, d_model=3, max_len=40)
  head.read.kernel[...] = jnp.eye(3)
  head.read.bias[...] = jnp.zeros(3)
  head.skip.kernel[...] = jnp.zeros((3, 3))
  head.skip.bias[...] = jnp.zeros(3)
  tokens = np.random.default_rng(5).integers(0, 3, size=(1, 40)).astype(np.int32)
  out = np.asarray(head(jax.nn.one_hot(tokens, 3), tokens_BxT=jnp.asarray(tokens)))
  seq = tokens[0].tolist()
  for t in range(2, 40):
    follow = Counter(seq[j] for j in range(2, t) if seq[j - 2:j] == seq[t - 1:t + 1])
    total = sum(follow.values())
    expected = [follow[a] / total if total else 0.0 for a in range(3)]
    np.testing.assert_allclose(out[0, t], expected, atol=1e-6)


def test_ngram_head_needs_tokens():
  head = make_head(2)
  with pytest.raises(ValueError, match='tokens'):
    head(jnp.zeros((1, 4, 8)))
  with pytest.raises(ValueError, match='n=0'):
    make_head(0)
