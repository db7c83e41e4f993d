"""Bursty in-context classification (Chan et al. 2022, "Data distributional properties drive
emergent in-context learning in transformers"; Reddy 2023, "The mechanistic basis of data
dependence and abrupt learning in an in-context classification task").

Items are synthetic, in Reddy's form. K training classes, each a centre mu_k ~ N(0, I_D / D)
fixed by `pool_seed`; an item of class k is x = (mu_k + epsilon * eta) / sqrt(1 + epsilon^2)
with eta ~ N(0, I_D / D) drawn fresh for every item (epsilon: within-class variability). Class
k carries label k mod L (fixed). `num_novel_classes` further centres, never used in training,
are the novel classes of the in-context test split.

A prompt is N context pairs (x_1, l_1), ..., (x_N, l_N) and a query item x_q whose label is the
target. Two kinds of prompt (a prompt is bursty with probability `p_bursty`):
  * bursty (Reddy's construction): N / B distinct classes, each appearing B times in the
    context, in random order; the query's class is one of them, so it appears exactly B times.
    The classes are drawn without replacement from the rank-frequency distribution (Gumbel
    top-k); the first one drawn, a plain draw from that distribution, is the query's class.
  * i.i.d.: the N context classes and the query class are drawn independently from the
    rank-frequency distribution (the query's class may or may not be in the context).
Class frequencies follow Zipf's law p(k) ∝ (k + 1)^-zipf_alpha over the K classes (class
index = frequency rank; alpha = 0 is uniform). With probability `permute_labels` a prompt's
labels are passed through a random permutation of the L labels (one bijection per prompt), so
only the context says which label a class carries (Chan et al.'s label-permuted sequences).

Model inputs are vectors of width D + L, one per token: an item is [x; 0_L], a label is
[0_D; one_hot(l)] (Reddy embeds labels as vectors in the same token width), interleaved
x_1, l_1, ..., x_N, l_N, x_q (T = 2N + 1). The read-out has L outputs; the target is the label
at the query (position 2N) and, with `predict_context_labels`, also the label of every context
item (at its item position 2i, from the pairs before it).

Evaluation splits (`sample_split`, analysis/classification_eval.py):
  in_distribution       the training distribution
  in_context            bursty prompts of novel classes (never trained on), each of the N / B
                        classes given a distinct random label per prompt: only the context can
                        tell the query's label (Reddy's IC test)
  in_context_permuted   bursty prompts of training classes with a random label permutation per
                        prompt (Chan et al.'s / Reddy's label-swap test)
  in_weights            the query's class has no exemplar in the context (context classes i.i.d.
                        from the rank-frequency distribution without it); labels fixed: only the
                        weights can tell the query's label (Chan et al.'s / Reddy's IW test)

Batch keys (B prompts, N context items, T = 2N + 1):
  items_BxNxD, query_item_BxD     float32 item features
  labels_BxN, query_label_B       int32   labels as shown in the prompt (after any permutation)
  classes_BxN, query_class_B      int32   classes (novel class j is K + j)
  exemplars_B                     int32   context items of the query's class
  bursty_B, permuted_B            int32   1 if the prompt is bursty / has permuted labels
  targets_BxT, target_mask_BxT    int32 / float32: the label to predict at each position (0
                                  where none) and 1 where the loss applies (query; context
                                  item positions too with predict_context_labels)

The loss is `classification_loss` (masked cross-entropy of targets_BxT);
`classification_objective(objective_config, task)` wraps it in the objective signature of
training/objectives.py (registered there as 'classification_ce').
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from core import Batch, ConfigError, ModelIO, require
from data.base import Task, merge_task_config, register_task

SPLITS = ('in_distribution', 'in_context', 'in_context_permuted', 'in_weights')
OBJECTIVE = 'classification_ce'

DEFAULTS = dict(
    num_classes=256,         # K training classes (Reddy varies K from 2^5 to 2^14)
    num_labels=32,           # L labels; class k -> label k mod L (Reddy: L = 32)
    num_context=8,           # N context (item, label) pairs (Reddy: N = 8)
    n_dims=63,               # D item dimensions (Reddy: D = 63)
    burstiness=4,            # B copies of each class in a bursty prompt; N % B == 0
    p_bursty=1.0,            # fraction of bursty prompts (the rest i.i.d.)
    zipf_alpha=0.0,          # class frequencies ∝ (rank + 1)^-alpha
    epsilon=0.1,             # within-class variability (Reddy's epsilon)
    permute_labels=0.0,      # fraction of prompts with a random label permutation
    num_novel_classes=64,    # held-out classes of the in-context split
    predict_context_labels=False,  # also train the label of every context item
    pool_seed=0,             # class centres
)
_FLOAT_KEYS = ('p_bursty', 'zipf_alpha', 'epsilon', 'permute_labels')
_INT_KEYS = ('num_classes', 'num_labels', 'num_context', 'n_dims', 'burstiness',
             'num_novel_classes', 'pool_seed')


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def merge_config(config: Any) -> Dict[str, Any]:
  cfg = merge_task_config('bursty_classification', DEFAULTS, config)
  for key in _INT_KEYS:
    require(_is_int(cfg[key]), f'task.{key}', cfg[key], 'an integer')
  for key in ('num_classes', 'num_labels', 'num_context', 'n_dims', 'burstiness'):
    require(cfg[key] >= 1, f'task.{key}', cfg[key], 'an integer >= 1')
  require(cfg['num_labels'] >= 2, 'task.num_labels', cfg['num_labels'], 'an integer >= 2')
  require(cfg['num_context'] % cfg['burstiness'] == 0, 'task.burstiness', cfg['burstiness'],
          f'a divisor of num_context={cfg["num_context"]} (N / B classes, B copies each)')
  groups = cfg['num_context'] // cfg['burstiness']
  require(cfg['num_classes'] >= max(groups, 2), 'task.num_classes', cfg['num_classes'],
          f'at least max(2, num_context / burstiness = {groups}) (distinct classes per prompt)')
  require(groups <= cfg['num_labels'], 'task.num_labels', cfg['num_labels'],
          f'at least num_context / burstiness = {groups} (novel classes get distinct labels)')
  require(cfg['num_novel_classes'] >= groups, 'task.num_novel_classes',
          cfg['num_novel_classes'], f'at least num_context / burstiness = {groups}')
  require(cfg['pool_seed'] >= 0, 'task.pool_seed', cfg['pool_seed'], 'an integer >= 0')
  for key in _FLOAT_KEYS:
    require(_is_number(cfg[key]) and math.isfinite(cfg[key]), f'task.{key}', cfg[key],
            'a finite number')
  for key in ('p_bursty', 'permute_labels'):
    require(0.0 <= cfg[key] <= 1.0, f'task.{key}', cfg[key], 'a probability in [0, 1]')
  require(cfg['epsilon'] >= 0, 'task.epsilon', cfg['epsilon'], 'a number >= 0')
  require(cfg['zipf_alpha'] >= 0, 'task.zipf_alpha', cfg['zipf_alpha'], 'a number >= 0')
  require(isinstance(cfg['predict_context_labels'], (bool, np.bool_)),
          'task.predict_context_labels', cfg['predict_context_labels'], 'True or False')
  return cfg


def zipf_probs(num_classes: int, alpha: float) -> np.ndarray:
  """p(k) ∝ (k + 1)^-alpha, k = 0..K-1 (class index = frequency rank)."""
  raw = (np.arange(1, num_classes + 1, dtype=np.float64)) ** -float(alpha)
  return raw / raw.sum()


def classification_loss(outputs_BxTxL: jax.Array, batch: Batch) -> Tuple[jax.Array, Dict]:
  """Masked cross-entropy of `targets_BxT` where `target_mask_BxT` is 1 (mean over those
  positions), with the accuracy and loss at the query (the last position) as metrics."""
  targets_BxT = batch['targets_BxT']
  mask_BxT = batch['target_mask_BxT']
  nll_BxT = optax.softmax_cross_entropy_with_integer_labels(
      outputs_BxTxL.astype(jnp.float32), targets_BxT)
  value = jnp.sum(nll_BxT * mask_BxT) / jnp.maximum(jnp.sum(mask_BxT), 1.0)
  correct_B = (jnp.argmax(outputs_BxTxL[:, -1], -1) == targets_BxT[:, -1]).astype(jnp.float32)
  return value, {'query_accuracy': jnp.mean(correct_B), 'query_loss': jnp.mean(nll_BxT[:, -1])}


def classification_objective(objective_config, task):
  """Objective factory in training/objectives.py's form: `loss(model, reference, batch, key)`
  is `classification_loss` of the model's outputs on `task.model_inputs(batch)`."""
  del objective_config

  def loss(model, reference, batch, key):
    del reference, key
    return classification_loss(model(task.model_inputs(batch)), batch)
  return loss


def interleave_items_and_labels(items_BxNxD: jax.Array, labels_BxN: jax.Array,
                                num_labels: int) -> jax.Array:
  """features_Bx2NxF, F = D + L: [x_1; 0], [0; e(l_1)], ..., [x_N; 0], [0; e(l_N)]."""
  batch_size, n, d = items_BxNxD.shape
  zeros = lambda width: jnp.zeros((batch_size, n, width), items_BxNxD.dtype)
  item_tokens_BxNxF = jnp.concatenate([items_BxNxD, zeros(num_labels)], -1)
  label_tokens_BxNxF = jnp.concatenate(
      [zeros(d), jax.nn.one_hot(labels_BxN, num_labels, dtype=items_BxNxD.dtype)], -1)
  return jnp.stack([item_tokens_BxNxF, label_tokens_BxNxF], 2).reshape(
      batch_size, 2 * n, d + num_labels)


def _gumbel_top_k(key: jax.Array, logits_BxK: jax.Array, k: int) -> jax.Array:
  """k distinct indices per row, drawn without replacement ∝ exp(logits) (Gumbel top-k); the
  first is a plain draw from softmax(logits)."""
  gumbel_BxK = jax.random.gumbel(key, logits_BxK.shape)
  return jax.lax.top_k(logits_BxK + gumbel_BxK, k)[1].astype(jnp.int32)


def _sample_from_weights(key: jax.Array, weights_BxK: jax.Array, count: int) -> jax.Array:
  """`count` i.i.d. indices per row with probabilities ∝ weights_BxK (inverse CDF: one uniform
  and a binary search per draw, rather than K Gumbels per draw)."""
  cdf_BxK = jnp.cumsum(weights_BxK, axis=-1)
  u_BxC = jax.random.uniform(key, (weights_BxK.shape[0], count)) * cdf_BxK[:, -1:]
  index_BxC = jax.vmap(lambda c, u: jnp.searchsorted(c, u, side='right'))(cdf_BxK, u_BxC)
  return jnp.minimum(index_BxC, weights_BxK.shape[-1] - 1).astype(jnp.int32)


def _random_permutations(key: jax.Array, batch_size: int, size: int) -> jax.Array:
  """One uniform random permutation of range(size) per row (argsort of uniforms)."""
  return jnp.argsort(jax.random.uniform(key, (batch_size, size)), axis=1).astype(jnp.int32)


@register_task('bursty_classification')
class BurstyClassification(Task):
  """Chan et al. / Reddy's bursty in-context classification; see the module docstring."""
  eval_family = 'classification'
  default_objective = OBJECTIVE
  # context_preference: DPO toward in-context answers (training/context_preference.py).
  objectives = (OBJECTIVE, 'context_preference')
  icl_metric = 'loss'
  per_seed_keys = ('pool_seed', 'p_bursty', 'zipf_alpha', 'epsilon', 'permute_labels')
  eval_splits = SPLITS
  # Splits whose query accuracy and loss the scheduled evaluation during training reports
  # (training/step.py `make_eval_fn`), and the split whose prompts the attention scores use.
  schedule_splits = ('in_context', 'in_weights')
  attention_split = 'in_context'

  @classmethod
  def default_config(cls) -> dict:
    return dict(DEFAULTS)

  def __init__(self, config: Any):
    super().__init__(config)
    cfg = merge_config(config)
    self.cfg = cfg
    self.num_classes = int(cfg['num_classes'])
    self.num_labels = int(cfg['num_labels'])
    self.num_context = int(cfg['num_context'])
    self.n_dims = int(cfg['n_dims'])
    self.burstiness = int(cfg['burstiness'])
    self.num_groups = self.num_context // self.burstiness
    self.num_novel = int(cfg['num_novel_classes'])
    self.predict_context_labels = bool(cfg['predict_context_labels'])
    self.seq_len = 2 * self.num_context + 1
    # Per-seed values (possibly traced after bind).
    self.p_bursty = float(cfg['p_bursty'])
    self.zipf_alpha = float(cfg['zipf_alpha'])
    self.epsilon = float(cfg['epsilon'])
    self.permute_labels = float(cfg['permute_labels'])
    self._pool_key = jax.random.key(int(cfg['pool_seed']))
    # Centres of a concrete pool seed are computed once here and kept on the device; a
    # per-seed (traced) pool seed regenerates them inside the step (`bind`).
    self._centres_cache: Dict[bool, jax.Array] = {}
    self._centres_cache = {novel: self.class_centres(novel) for novel in (False, True)}

  # ---- interface -----------------------------------------------------------------------

  def io(self) -> ModelIO:
    return ModelIO(input_kind='vectors', input_dim=self.n_dims + self.num_labels,
                   seq_len=self.seq_len, output_dim=self.num_labels)

  def bind(self, values: Dict[str, Any]) -> 'BurstyClassification':
    bound = copy.copy(self)
    for key, value in values.items():
      if key not in self.per_seed_keys:
        raise ConfigError(f'task.{key} cannot vary across seeds: per-seed task keys of '
                          f'{self.name!r} are {", ".join(self.per_seed_keys)}')
      if key == 'pool_seed':
        bound._pool_key = jax.random.key(value)
        bound._centres_cache = {}
      else:
        setattr(bound, key, value)
    return bound

  def sample(self, key: jax.Array, batch_size: int, step: Any = 0) -> Batch:
    """Training prompts (the in_distribution split); `step` is unused."""
    del step
    return self.sample_split(key, batch_size, 'in_distribution')

  def model_inputs(self, batch: Batch) -> jax.Array:
    """features_BxTx(D+L): [x_1; 0], [0; e(l_1)], ..., [x_N; 0], [0; e(l_N)], [x_q; 0]."""
    items_BxNxD = batch['items_BxNxD']
    batch_size = items_BxNxD.shape[0]
    pairs_BxTxF = interleave_items_and_labels(items_BxNxD, batch['labels_BxN'], self.num_labels)
    query_Bx1xF = jnp.concatenate(
        [batch['query_item_BxD'], jnp.zeros((batch_size, self.num_labels), items_BxNxD.dtype)],
        -1)[:, None]
    return jnp.concatenate([pairs_BxTxF, query_Bx1xF], 1)

  def position_metrics(self, outputs_BxTxL, batch: Batch) -> Dict[str, jax.Array]:
    """Curves 'loss' / 'accuracy' at every scored item position (context items 0..N-1 when
    they are trained, then the query), 'loss_by_exemplars' / 'accuracy_by_exemplars' at the
    query against the number of exemplars of its class in the context (0..N; NaN where no
    prompt has that many), and scalars 'query_loss' / 'query_accuracy'."""
    scores = self.query_scores(outputs_BxTxL, batch, all_items=self.predict_context_labels)
    loss_BxP, correct_BxP = scores['loss_BxQ'], scores['correct_BxQ']
    onehot_BxC = jax.nn.one_hot(batch['exemplars_B'], self.num_context + 1)
    count_C = jnp.sum(onehot_BxC, 0)
    per_count = lambda v_B: jnp.where(count_C > 0, v_B @ onehot_BxC / jnp.maximum(count_C, 1),
                                      jnp.nan)
    return {'loss': jnp.mean(loss_BxP, 0), 'accuracy': jnp.mean(correct_BxP, 0),
            'loss_by_exemplars': per_count(loss_BxP[:, -1]),
            'accuracy_by_exemplars': per_count(correct_BxP[:, -1]),
            'query_loss': jnp.mean(loss_BxP[:, -1]),
            'query_accuracy': jnp.mean(correct_BxP[:, -1])}

  # ---- evaluation interface (analysis/classification_eval.py) -------------------------

  def num_queries(self) -> int:
    return 1

  def query_scores(self, outputs_BxTxL, batch: Batch, all_items: bool = False):
    """Per prompt: {'loss_BxQ', 'correct_BxQ'} at the query (Q = 1), or at every context item
    position and the query (Q = N + 1) with `all_items`."""
    positions = np.arange(0, self.seq_len, 2) if all_items else np.array([self.seq_len - 1])
    logits_BxQxL = outputs_BxTxL[:, positions].astype(jnp.float32)
    targets_BxQ = batch['targets_BxT'][:, positions]
    nll_BxQ = optax.softmax_cross_entropy_with_integer_labels(logits_BxQxL, targets_BxQ)
    correct_BxQ = (jnp.argmax(logits_BxQxL, -1) == targets_BxQ).astype(jnp.float32)
    return {'loss_BxQ': nll_BxQ, 'correct_BxQ': correct_BxQ}

  def baseline_scores(self, batch: Batch) -> Dict[str, jax.Array]:
    """Expected accuracy at the query (B x 1) of reference predictors:
      context_nn   the label of the context item nearest to the query (in-context only)
      class_label  the query class's fixed label k mod L (in-weights only; an oracle that knows
                   the class)
      chance       1 / L
    """
    items_BxNxD, query_BxD = batch['items_BxNxD'], batch['query_item_BxD']
    dist_BxN = jnp.sum(jnp.square(items_BxNxD - query_BxD[:, None]), -1)
    nearest_B = jnp.argmin(dist_BxN, -1)
    nn_label_B = jnp.take_along_axis(batch['labels_BxN'], nearest_B[:, None], 1)[:, 0]
    target_B = batch['query_label_B']
    fixed_B = batch['query_class_B'] % self.num_labels
    chance_B = jnp.full(target_B.shape, 1.0 / self.num_labels)
    as_q = lambda v: v.astype(jnp.float32)[:, None]
    return {'context_nn': as_q(nn_label_B == target_B), 'class_label': as_q(fixed_B == target_B),
            'chance': as_q(chance_B)}

  def split_description(self, split: str) -> str:
    return {
        'in_distribution': 'the training distribution',
        'in_context': 'bursty prompts of novel classes with random labels (context only)',
        'in_context_permuted': 'bursty prompts of training classes, labels permuted per prompt',
        'in_weights': 'no exemplar of the query class in the context (weights only)',
    }[split]

  def attention_targets(self, batch: Batch) -> Dict[str, Tuple[np.ndarray, jax.Array]]:
    """Reddy's two-layer induction circuit, as attention targets on prompts of this task:
      induction       from the query (position 2N) to the label tokens (2i + 1) of the context
                      items of the query's class: the head that copies their label
      previous_token  from each label token (2i + 1) to its own item (2i): the head that
                      writes the item into the label token
    name -> (query positions Q, target weights BxQxT); a head's score is the weighted attention
    mass of its queries. Induction: the mass on the query class's label tokens minus the mass
    on the other label tokens, scaled so that uniform attention (over all positions or over
    the label tokens only) scores 0, and a head that reads only the right labels scores 1.
    Previous-token: the mass on the item before (1 when all of it; uniform causal attention
    gives 1 / (2i + 2))."""
    n, seq_len = self.num_context, self.seq_len
    batch_size = batch['classes_BxN'].shape[0]
    match_BxN = (batch['classes_BxN'] == batch['query_class_B'][:, None]).astype(jnp.float32)
    matches_Bx1 = jnp.sum(match_BxN, 1, keepdims=True)
    # Other labels count against the head, weighted so that attending uniformly to every
    # label token (which a head can learn without reading items) scores 0.
    other_weight_Bx1 = matches_Bx1 / jnp.maximum(n - matches_Bx1, 1.0)
    label_weights_BxN = match_BxN - (1.0 - match_BxN) * other_weight_Bx1
    induction_BxT = jnp.zeros((batch_size, seq_len), jnp.float32).at[:, 1:2 * n:2].set(
        label_weights_BxN)
    label_positions = np.arange(1, 2 * n, 2)
    previous_QxT = np.zeros((n, seq_len), np.float32)
    previous_QxT[np.arange(n), label_positions - 1] = 1.0
    return {'induction': (np.array([seq_len - 1]), induction_BxT[:, None]),
            'previous_token': (label_positions,
                               jnp.broadcast_to(jnp.asarray(previous_QxT),
                                                (batch_size, n, seq_len)))}

  # ---- sampling ------------------------------------------------------------------------

  def class_centres(self, novel: bool = False) -> jax.Array:
    """mu_KxD (or the novel classes' mu_HxD): N(0, I/D), fixed by pool_seed."""
    if novel in self._centres_cache:
      return self._centres_cache[novel]
    count = self.num_novel if novel else self.num_classes
    key = jax.random.fold_in(self._pool_key, 1 if novel else 0)
    return jax.random.normal(key, (count, self.n_dims)) / math.sqrt(self.n_dims)

  def class_logits(self) -> jax.Array:
    """log p(k) up to a constant: -alpha * log(k + 1) (alpha possibly traced)."""
    return -self.zipf_alpha * jnp.log(jnp.arange(1, self.num_classes + 1, dtype=jnp.float32))

  def _items(self, key: jax.Array, centres_CxD: jax.Array, classes: jax.Array) -> jax.Array:
    mu = centres_CxD[classes]
    eta = jax.random.normal(key, mu.shape) / math.sqrt(self.n_dims)
    return (mu + self.epsilon * eta) / jnp.sqrt(1.0 + jnp.square(self.epsilon))

  def _bursty_classes(self, key: jax.Array, logits_BxC: jax.Array):
    """(context classes_BxN, the prompt's classes_BxG in draw order): N / B = G distinct
    classes, B copies each, in random order; the query's class is groups[:, 0]."""
    k_pick, k_order = jax.random.split(key)
    batch_size = logits_BxC.shape[0]
    groups_BxG = _gumbel_top_k(k_pick, logits_BxC, self.num_groups)
    repeated_BxN = jnp.repeat(groups_BxG, self.burstiness, axis=1)
    order_BxN = _random_permutations(k_order, batch_size, self.num_context)
    return jnp.take_along_axis(repeated_BxN, order_BxN, 1), groups_BxG

  def sample_split(self, key: jax.Array, batch_size: int, split: str) -> Batch:
    """Prompts of one evaluation split (see SPLITS); jittable with `split` static."""
    if split not in SPLITS:
      raise ConfigError(f'split {split!r} is invalid: one of {", ".join(SPLITS)}')
    k_burst, k_iid, k_choose, k_perm, k_use_perm, k_items, k_query = jax.random.split(key, 7)
    n, num_labels = self.num_context, self.num_labels
    logits_BxK = jnp.broadcast_to(self.class_logits(), (batch_size, self.num_classes))
    centres = self.class_centres(novel=(split == 'in_context'))
    perm_BxL = _random_permutations(k_perm, batch_size, num_labels)
    offset = 0
    if split == 'in_distribution':
      b_classes, b_groups = self._bursty_classes(k_burst, logits_BxK)
      b_query = b_groups[:, 0]
      iid_BxN1 = _sample_from_weights(k_iid, jnp.exp(logits_BxK), n + 1)
      bursty_B = jax.random.bernoulli(k_choose, self.p_bursty, (batch_size,))
      classes_BxN = jnp.where(bursty_B[:, None], b_classes, iid_BxN1[:, :n])
      query_B = jnp.where(bursty_B, b_query, iid_BxN1[:, n])
      permuted_B = jax.random.bernoulli(k_use_perm, self.permute_labels, (batch_size,))
      base = lambda c: c % num_labels
    elif split == 'in_context':
      novel_logits = jnp.zeros((batch_size, self.num_novel))
      classes_BxN, groups_BxG = self._bursty_classes(k_burst, novel_logits)
      query_B = groups_BxG[:, 0]
      bursty_B = jnp.ones((batch_size,), bool)
      permuted_B = jnp.zeros((batch_size,), bool)
      offset = self.num_classes
      base = None
    elif split == 'in_context_permuted':
      classes_BxN, groups_BxG = self._bursty_classes(k_burst, logits_BxK)
      query_B = groups_BxG[:, 0]
      bursty_B = jnp.ones((batch_size,), bool)
      permuted_B = jnp.ones((batch_size,), bool)
      base = lambda c: c % num_labels
    else:  # in_weights
      weights_BxK = jnp.exp(logits_BxK)
      query_B = _sample_from_weights(k_iid, weights_BxK, 1)[:, 0]
      # The context classes: the same distribution with the query's class removed.
      others_BxK = jnp.where(jnp.arange(self.num_classes)[None] == query_B[:, None], 0.0,
                             weights_BxK)
      classes_BxN = _sample_from_weights(k_burst, others_BxK, n)
      bursty_B = jnp.zeros((batch_size,), bool)
      permuted_B = jnp.zeros((batch_size,), bool)
      base = lambda c: c % num_labels

    if base is None:
      # Novel classes have no label of their own: the prompt's g-th class (in draw order) gets
      # label perm[g] of a random permutation, so its N / B classes carry distinct labels.
      match_BxNxG = classes_BxN[:, :, None] == groups_BxG[:, None, :]
      labels_BxN = jnp.sum(match_BxNxG * perm_BxL[:, None, :self.num_groups], -1)
      query_label_B = perm_BxL[:, 0]
    else:
      def show(labels_BxM):
        permuted_BxM = jnp.take_along_axis(perm_BxL, labels_BxM, 1)
        return jnp.where(permuted_B[:, None], permuted_BxM, labels_BxM)
      labels_BxN = show(base(classes_BxN))
      query_label_B = show(base(query_B)[:, None])[:, 0]

    items_BxNxD = self._items(k_items, centres, classes_BxN)
    query_item_BxD = self._items(k_query, centres, query_B)
    exemplars_B = jnp.sum(classes_BxN == query_B[:, None], 1).astype(jnp.int32)

    targets_BxT = jnp.zeros((batch_size, self.seq_len), jnp.int32)
    targets_BxT = targets_BxT.at[:, 0:2 * n:2].set(labels_BxN).at[:, -1].set(query_label_B)
    mask_T = np.zeros(self.seq_len, np.float32)
    mask_T[-1] = 1.0
    if self.predict_context_labels:
      mask_T[0:2 * n:2] = 1.0
    return {
        'items_BxNxD': items_BxNxD.astype(jnp.float32),
        'query_item_BxD': query_item_BxD.astype(jnp.float32),
        'labels_BxN': labels_BxN.astype(jnp.int32),
        'query_label_B': query_label_B.astype(jnp.int32),
        'classes_BxN': (classes_BxN + offset).astype(jnp.int32),
        'query_class_B': (query_B + offset).astype(jnp.int32),
        'exemplars_B': exemplars_B,
        'bursty_B': bursty_B.astype(jnp.int32),
        'permuted_B': permuted_B.astype(jnp.int32),
        'targets_BxT': targets_BxT,
        'target_mask_BxT': jnp.broadcast_to(jnp.asarray(mask_T), (batch_size, self.seq_len)),
    }
