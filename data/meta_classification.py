"""A classification task family whose number of distinct tasks can be swept (Kirsch et al. 2022,
"General-purpose in-context learning by meta-learning transformers").

Kirsch et al. build tasks from one base dataset (MNIST and others): task t applies a random
linear projection A_t to every input and a random permutation pi_t to the labels. With few tasks
a transformer memorises them (good on the training tasks, chance on new ones), with more it
identifies which training task a prompt comes from, and past a transition it learns in context
(new tasks as good as training tasks). Here the base dataset is synthetic (no download):

  base classes   L Gaussian clusters in D dimensions, centres c_l ~ N(0, I_D / D) fixed by
                 `pool_seed`; a base item of class l is x = (c_l + epsilon * eta) / sqrt(1 +
                 epsilon^2), eta ~ N(0, I_D / D) fresh per item (Reddy's normalisation)
  task t         A_t with i.i.d. N(0, 1 / D) entries and a permutation pi_t of the L labels,
                 both drawn from fold_in(key(pool_seed), t + 1); an example of the task is
                 (A_t x, pi_t(l)) for a base item x of class l (uniform over classes)
  pool           `num_tasks` = M > 0: the prompt's task is t ~ Uniform{0..M-1}; M = 0: a fresh
                 task for every prompt (effectively unlimited tasks)

A prompt is N examples of one task, interleaved item and label tokens exactly as
bursty_classification ([x; 0_L], [0_D; e(label)]; T = 2N - 1: the last label is not shown),
and the label of every item is trained from the pairs before it (Kirsch et al. train every
position), so accuracy by position shows learning in context.

Splits (analysis/classification_eval.py):
  in_distribution   tasks of the training pool (the fresh-task stream when num_tasks = 0)
  in_context        tasks never trained on (task indices from a disjoint stream): only the
                    context can tell the label map, the general-learning test
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
import optax

from core import Batch, ModelIO, require
from data.base import Task, merge_task_config, register_task
from data.classification import OBJECTIVE, interleave_items_and_labels

SPLITS = ('in_distribution', 'in_context')
# Task indices of the in_context split start here, far above any training pool.
UNSEEN_OFFSET = 1 << 30

DEFAULTS = dict(
    num_tasks=0,          # M distinct tasks in training (0: a fresh task for every prompt)
    num_labels=10,        # L base classes = labels (Kirsch: 10, MNIST)
    num_context=16,       # N examples per prompt
    n_dims=32,            # D input dimensions
    epsilon=0.5,          # within-class variability of the base items
    pool_seed=0,          # base centres and task projections
)


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def merge_config(config: Any) -> Dict[str, Any]:
  cfg = merge_task_config('meta_classification', DEFAULTS, config)
  for key in ('num_tasks', 'pool_seed'):
    require(_is_int(cfg[key]) and 0 <= cfg[key] < UNSEEN_OFFSET, f'task.{key}', cfg[key],
            f'an integer in [0, {UNSEEN_OFFSET})')
  for key in ('num_context', 'n_dims'):
    require(_is_int(cfg[key]) and cfg[key] >= 1, f'task.{key}', cfg[key], 'an integer >= 1')
  require(_is_int(cfg['num_labels']) and cfg['num_labels'] >= 2, 'task.num_labels',
          cfg['num_labels'], 'an integer >= 2')
  eps = cfg['epsilon']
  require(isinstance(eps, (int, float, np.integer, np.floating)) and not isinstance(eps, bool)
          and math.isfinite(eps) and eps >= 0, 'task.epsilon', eps, 'a finite number >= 0')
  return cfg


@register_task('meta_classification')
class MetaClassification(Task):
  """Kirsch et al.'s projected-and-permuted classification tasks; see the module docstring."""
  eval_family = 'classification'
  default_objective = OBJECTIVE
  objectives = (OBJECTIVE,)
  icl_metric = 'loss'
  per_seed_keys = ('epsilon',)
  eval_splits = SPLITS
  schedule_splits = ('in_distribution', 'in_context')

  @classmethod
  def default_config(cls) -> dict:
    return dict(DEFAULTS)

  def __init__(self, config: Any):
    super().__init__(config)
    cfg = merge_config(config)
    self.cfg = cfg
    self.num_tasks = int(cfg['num_tasks'])
    self.num_labels = int(cfg['num_labels'])
    self.num_context = int(cfg['num_context'])
    self.n_dims = int(cfg['n_dims'])
    self.epsilon = float(cfg['epsilon'])
    self.seq_len = 2 * self.num_context - 1
    self._pool_key = jax.random.key(int(cfg['pool_seed']))
    self._centres_LxD = (jax.random.normal(jax.random.fold_in(self._pool_key, 0),
                                           (self.num_labels, self.n_dims))
                         / math.sqrt(self.n_dims))

  def io(self) -> ModelIO:
    return ModelIO(input_kind='vectors', input_dim=self.n_dims + self.num_labels,
                   seq_len=self.seq_len, output_dim=self.num_labels)

  def bind(self, values: Dict[str, Any]) -> 'MetaClassification':
    bound = copy.copy(self)
    for key, value in values.items():
      require(key in self.per_seed_keys, f'task.{key}', value,
              f'a key that may vary across seeds ({", ".join(self.per_seed_keys)})')
      setattr(bound, key, value)
    return bound

  # ---- tasks ------------------------------------------------------------------------------

  def task_parameters(self, task_index_B: jax.Array):
    """(A_BxDxD, permutation_BxL) of the given task indices."""
    def one(index):
      key = jax.random.fold_in(self._pool_key, index + 1)
      k_proj, k_perm = jax.random.split(key)
      projection = jax.random.normal(k_proj, (self.n_dims, self.n_dims)) / math.sqrt(self.n_dims)
      return projection, jax.random.permutation(k_perm, self.num_labels).astype(jnp.int32)
    return jax.vmap(one)(task_index_B)

  def _task_indices(self, key: jax.Array, batch_size: int, split: str) -> jax.Array:
    if split == 'in_context':   # never a training task, pool or stream
      return UNSEEN_OFFSET + jax.random.randint(key, (batch_size,), 0, UNSEEN_OFFSET - 1)
    if self.num_tasks == 0:     # a fresh task per prompt (disjoint from in_context's)
      return jax.random.randint(key, (batch_size,), 0, UNSEEN_OFFSET - 1)
    return jax.random.randint(key, (batch_size,), 0, self.num_tasks)

  def sample(self, key: jax.Array, batch_size: int, step: Any = 0) -> Batch:
    del step
    return self.sample_split(key, batch_size, 'in_distribution')

  def sample_split(self, key: jax.Array, batch_size: int, split: str) -> Batch:
    """Prompts of `split` (static): items_BxNxD (projected), labels_BxN (permuted), the base
    classes_BxN, task_B, and the targets of every item position."""
    require(split in SPLITS, 'split', split, f'one of {", ".join(SPLITS)}')
    k_task, k_class, k_noise = jax.random.split(key, 3)
    n, d = self.num_context, self.n_dims
    task_B = self._task_indices(k_task, batch_size, split)
    projection_BxDxD, permutation_BxL = self.task_parameters(task_B)
    classes_BxN = jax.random.randint(k_class, (batch_size, n), 0, self.num_labels)
    eta_BxNxD = jax.random.normal(k_noise, (batch_size, n, d)) / math.sqrt(d)
    base_BxNxD = ((self._centres_LxD[classes_BxN] + self.epsilon * eta_BxNxD)
                  / jnp.sqrt(1.0 + jnp.square(self.epsilon)))
    items_BxNxD = jnp.einsum('bed,bnd->bne', projection_BxDxD, base_BxNxD)
    labels_BxN = jnp.take_along_axis(permutation_BxL, classes_BxN, 1)
    targets_BxT = jnp.zeros((batch_size, self.seq_len), jnp.int32).at[:, 0::2].set(labels_BxN)
    mask_T = np.zeros(self.seq_len, np.float32)
    mask_T[0::2] = 1.0
    return {'items_BxNxD': items_BxNxD.astype(jnp.float32), 'labels_BxN': labels_BxN,
            'classes_BxN': classes_BxN, 'task_B': task_B, 'targets_BxT': targets_BxT,
            'target_mask_BxT': jnp.broadcast_to(jnp.asarray(mask_T),
                                                (batch_size, self.seq_len))}

  def model_inputs(self, batch: Batch) -> jax.Array:
    """features_BxTx(D+L): [x_1; 0], [0; e(l_1)], ..., [x_N; 0] (the last label not shown)."""
    pairs_BxTxF = interleave_items_and_labels(batch['items_BxNxD'], batch['labels_BxN'],
                                              self.num_labels)
    return pairs_BxTxF[:, :self.seq_len]

  # ---- evaluation ----------------------------------------------------------------------------

  def num_queries(self) -> int:
    return self.num_context

  def query_scores(self, outputs_BxTxL, batch: Batch, all_items: bool = True):
    """{'loss_BxQ', 'correct_BxQ'} at every item position (Q = N: example i is predicted from
    the i examples before it)."""
    del all_items
    logits_BxNxL = outputs_BxTxL[:, 0::2].astype(jnp.float32)
    targets_BxN = batch['labels_BxN']
    return {'loss_BxQ': optax.softmax_cross_entropy_with_integer_labels(logits_BxNxL,
                                                                        targets_BxN),
            'correct_BxQ': (jnp.argmax(logits_BxNxL, -1) == targets_BxN).astype(jnp.float32)}

  def position_metrics(self, outputs_BxTxL, batch: Batch) -> Dict[str, jax.Array]:
    scores = self.query_scores(outputs_BxTxL, batch)
    return {'loss': jnp.mean(scores['loss_BxQ'], 0),
            'accuracy': jnp.mean(scores['correct_BxQ'], 0)}

  def baseline_scores(self, batch: Batch) -> Dict[str, jax.Array]:
    """Accuracy (B x N) at every item position of:
      context_nn   the label of the nearest earlier item (1 / L at the first item)
      chance       1 / L
    """
    items_BxNxD, labels_BxN = batch['items_BxNxD'], batch['labels_BxN']
    n = items_BxNxD.shape[1]
    dist_BxNxN = jnp.sum(jnp.square(items_BxNxD[:, :, None] - items_BxNxD[:, None]), -1)
    earlier_NxN = jnp.tril(jnp.ones((n, n), bool), -1)
    dist_BxNxN = jnp.where(earlier_NxN, dist_BxNxN, jnp.inf)
    nearest_BxN = jnp.argmin(dist_BxNxN, -1)
    nn_label_BxN = jnp.take_along_axis(labels_BxN, nearest_BxN, 1)
    chance = 1.0 / self.num_labels
    nn_correct = jnp.where(jnp.arange(n)[None] == 0, chance,
                           (nn_label_BxN == labels_BxN).astype(jnp.float32))
    return {'context_nn': nn_correct, 'chance': jnp.full(labels_BxN.shape, chance)}

  def split_description(self, split: str) -> str:
    return {'in_distribution': 'tasks of the training pool',
            'in_context': 'tasks never trained on (context only)'}[split]
