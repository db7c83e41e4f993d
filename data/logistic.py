"""In-context logistic regression and linear classification (Bhatia et al. 2023, TART).

TART's reasoning module is trained on synthetic logistic-regression prompts: for every prompt
a weight vector w ~ N(0, I_d) is drawn, inputs x_i ~ N(0, I_d), and labels
y_i ~ Bernoulli(sigmoid(weight_scale * w·x_i)) in {0, 1} (their `weight_multiplier` = 10,
d = 16, 66 points, a Garg-style curriculum on dims and points; their
src/reasoning_module/tasks.py and conf/probabilistic_logistic_regression.yaml). The model reads
x_0, y_0, x_1, y_1, ... (a y-token is [y, 0, ..., 0], as in data/regression.py) and at every x
position outputs the logit of P(y_i = 1 | x_i, pairs before it); it is trained with binary
cross-entropy on that logit (objective 'logistic_bce', TART's `cross_entropy_zero_one`).

`task.label_model` picks the label distribution:
  logistic                y ~ Bernoulli(sigmoid(weight_scale * w·x))  (TART)
  linear_classification   y = 1[w·x > 0]   (the noiseless limit weight_scale -> inf)
and, for both, each label is then flipped independently with probability `flip_prob`.
`task.label_values` sets how a label is written into the prompt: 'zero_one' (TART) or
'plus_minus' (-1 / +1). Batches also carry `targets_BxN` (the class in {0, 1}).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import optax

from core import Batch, ConfigError, ModelIO, require
from data.base import Task, merge_task_config, register_task
from data.regression import (_is_int, _is_number, curriculum_state, interleave_points,
                             validate_curriculum)

LABEL_MODELS = ('logistic', 'linear_classification')
LABEL_VALUES = ('zero_one', 'plus_minus')

DEFAULTS = dict(
    n_dims=16,              # input dimension d (TART: 16)
    n_points=66,            # (x, y) pairs per prompt (TART: 66); sequence length 2 * n_points
    label_model='logistic',  # 'logistic' | 'linear_classification'
    weight_scale=10.0,      # logistic: P(y=1) = sigmoid(weight_scale * w·x) (TART: 10)
    flip_prob=0.0,          # every label flipped independently with this probability
    label_values='zero_one',  # label token values: 'zero_one' (TART) | 'plus_minus'
    curriculum=False,       # TART's (Garg's) curriculum on dims and points
    dims_start=4,
    dims_inc=4,
    dims_interval=1000,
    points_start=18,
    points_inc=8,
    points_interval=1000,
)


def binary_accuracy(logits, targets):
  """1 where the sign of the logit names the target class, 0 where it names the other, 0.5 at
  logit 0 (a coin flip's expected accuracy)."""
  return jnp.where(logits > 0, targets, jnp.where(logits < 0, 1.0 - targets, 0.5))


def binary_cross_entropy(logits, targets):
  """-log P(target) under P(class 1) = sigmoid(logit); exact for infinite logits."""
  return jnp.where(targets > 0.5, jax.nn.softplus(-logits), jax.nn.softplus(logits))


@register_task('logistic_regression')
class LogisticRegression(Task):
  """TART's synthetic logistic regression (and noiseless linear classification)."""
  eval_family = 'logistic'
  default_objective = 'logistic_bce'
  objectives = ('logistic_bce',)
  icl_metric = 'loss'
  per_seed_keys = ('weight_scale', 'flip_prob')

  @classmethod
  def default_config(cls) -> dict:
    return dict(DEFAULTS)

  def __init__(self, config: Any):
    super().__init__(config)
    cfg = merge_task_config(self.name, DEFAULTS, config)
    self._validate(cfg)
    self.cfg = cfg
    self.n_dims = int(cfg['n_dims'])
    self.n_points = int(cfg['n_points'])
    self.label_model = cfg['label_model']
    self.weight_scale = float(cfg['weight_scale'])
    self.flip_prob = float(cfg['flip_prob'])
    self.plus_minus = cfg['label_values'] == 'plus_minus'

  @staticmethod
  def _validate(cfg: dict) -> None:
    for key in ('n_dims', 'n_points'):
      require(_is_int(cfg[key]) and cfg[key] >= 1, f'task.{key}', cfg[key], 'an integer >= 1')
    require(cfg['label_model'] in LABEL_MODELS, 'task.label_model', cfg['label_model'],
            f'one of {", ".join(LABEL_MODELS)}')
    require(cfg['label_values'] in LABEL_VALUES, 'task.label_values', cfg['label_values'],
            f'one of {", ".join(LABEL_VALUES)}')
    scale = cfg['weight_scale']
    require(_is_number(scale) and math.isfinite(scale) and scale > 0, 'task.weight_scale',
            scale, 'a finite number > 0')
    flip = cfg['flip_prob']
    require(_is_number(flip) and 0 <= flip <= 0.5, 'task.flip_prob', flip,
            'a number in [0, 0.5]')
    validate_curriculum(cfg)

  # ---- interface -----------------------------------------------------------------------

  def io(self) -> ModelIO:
    return ModelIO(input_kind='vectors', input_dim=self.n_dims, seq_len=2 * self.n_points,
                   output_dim=1)

  def bind(self, values: Dict[str, Any]) -> 'LogisticRegression':
    """A copy reading per-seed (possibly traced) `weight_scale` / `flip_prob`."""
    bound = copy.copy(self)
    for key, value in values.items():
      if key not in self.per_seed_keys:
        raise ConfigError(f'task.{key} cannot vary across seeds: per-seed task keys of '
                          f'{self.name!r} are {", ".join(self.per_seed_keys)}')
      setattr(bound, key, value)
    return bound

  def curriculum_state(self, step: Any) -> Tuple[jax.Array, jax.Array]:
    """(effective dims, effective points) at `step` (traced int ok): TART's staircase."""
    return curriculum_state(self.cfg, self.n_dims, self.n_points, step)

  def class_probabilities(self, w_BxD: jax.Array, xs_BxNxD: jax.Array) -> jax.Array:
    """P(class 1 | x, w) for every point, label flips included (the Bayes oracle's belief)."""
    score_BxN = jnp.einsum('bnd,bd->bn', xs_BxNxD, w_BxD)
    if self.label_model == 'logistic':
      clean_BxN = jax.nn.sigmoid(self.weight_scale * score_BxN)
    else:
      clean_BxN = (score_BxN > 0).astype(jnp.float32)
    return (1.0 - self.flip_prob) * clean_BxN + self.flip_prob * (1.0 - clean_BxN)

  def oracle_logits(self, w_BxD: jax.Array, xs_BxNxD: jax.Array) -> jax.Array:
    """log-odds of class 1 given the true w: weight_scale * w·x for logistic labels without
    flips, +-inf for noiseless linear classification, log(p / (1 - p)) otherwise."""
    score_BxN = jnp.einsum('bnd,bd->bn', xs_BxNxD, w_BxD)
    p_BxN = self.class_probabilities(w_BxD, xs_BxNxD)
    from_probs = jnp.log(p_BxN) - jnp.log1p(-p_BxN)
    if self.label_model == 'logistic':
      return jnp.where(self.flip_prob > 0, from_probs, self.weight_scale * score_BxN)
    return from_probs

  def sample_with_functions(self, key: jax.Array, batch_size: int,
                            step: Any = 0) -> Tuple[Batch, Dict[str, jax.Array]]:
    """(batch, {'w_BxD'}): a pure, jittable function of key and (traced) step."""
    k_w, k_x, k_y = jax.random.split(key, 3)
    w_BxD = jax.random.normal(k_w, (batch_size, self.n_dims))
    xs_BxNxD = jax.random.normal(k_x, (batch_size, self.n_points, self.n_dims))
    dims, points = self.curriculum_state(step)
    # The curriculum zeroes trailing coordinates (of x and w) rather than changing shapes.
    dim_mask_D = (jnp.arange(self.n_dims) < dims).astype(jnp.float32)
    xs_BxNxD = xs_BxNxD * dim_mask_D
    w_BxD = w_BxD * dim_mask_D
    p_BxN = self.class_probabilities(w_BxD, xs_BxNxD)
    targets_BxN = (jax.random.uniform(k_y, p_BxN.shape) < p_BxN).astype(jnp.float32)
    mask_N = (jnp.arange(self.n_points) < points).astype(jnp.float32)
    batch = {
        'xs_BxNxD': xs_BxNxD.astype(jnp.float32),
        'ys_BxN': (2.0 * targets_BxN - 1.0) if self.plus_minus else targets_BxN,
        'targets_BxN': targets_BxN,
        'point_mask_BxN': jnp.broadcast_to(mask_N, (batch_size, self.n_points)),
    }
    return batch, {'w_BxD': w_BxD}

  def sample(self, key: jax.Array, batch_size: int, step: Any = 0) -> Batch:
    """{'xs_BxNxD', 'ys_BxN', 'targets_BxN', 'point_mask_BxN'}."""
    return self.sample_with_functions(key, batch_size, step)[0]

  def eval_step(self) -> int:
    """A step at which the curriculum has finished (all dims, all points); 0 without one."""
    if not self.cfg['curriculum']:
      return 0
    c = self.cfg
    return max(c['dims_interval'] * math.ceil(self.n_dims / max(c['dims_inc'], 1)),
               c['points_interval'] * math.ceil(self.n_points / max(c['points_inc'], 1)))

  def sample_eval(self, key: jax.Array, batch_size: int) -> Tuple[Batch, Dict[str, jax.Array]]:
    """Prompts of the finished curriculum (all dims, all points) with their weights."""
    return self.sample_with_functions(key, batch_size, self.eval_step())

  def model_inputs(self, batch: Batch) -> jax.Array:
    """features_Bx(2N)xD: x_0, [y_0, 0, .., 0], x_1, [y_1, 0, .., 0], ... (TART's layout)."""
    return interleave_points(batch['xs_BxNxD'], batch['ys_BxN'])

  def logits(self, outputs_BxTxO: jax.Array) -> jax.Array:
    """logits_BxN: read-out at every x position (log-odds of class 1 from x_i and pairs < i)."""
    return outputs_BxTxO[:, 0::2, 0]

  def position_metrics(self, outputs_BxTxO, batch: Batch) -> Dict[str, jax.Array]:
    """Cross-entropy ('loss') and accuracy at each number of in-context examples (NaN where
    the curriculum masks every prompt's point)."""
    logits_BxN = self.logits(outputs_BxTxO)
    mask_BxN = batch['point_mask_BxN']
    count_N = jnp.sum(mask_BxN, axis=0)
    def mean(values_BxN):
      return jnp.where(count_N > 0, jnp.sum(values_BxN * mask_BxN, 0) / jnp.maximum(count_N, 1),
                       jnp.nan)
    return {'loss': mean(binary_cross_entropy(logits_BxN, batch['targets_BxN'])),
            'accuracy': mean(binary_accuracy(logits_BxN, batch['targets_BxN']))}


def logistic_bce_loss(logits_BxN: jax.Array, batch: Batch) -> Tuple[jax.Array, Dict]:
  """Mean binary cross-entropy over unmasked points, with accuracy and last-point accuracy."""
  targets_BxN, mask_BxN = batch['targets_BxN'], batch['point_mask_BxN']
  total = jnp.maximum(jnp.sum(mask_BxN), 1.0)
  nll_BxN = optax.sigmoid_binary_cross_entropy(logits_BxN, targets_BxN)
  correct_BxN = binary_accuracy(logits_BxN, targets_BxN) * mask_BxN
  last_B = jnp.sum(mask_BxN, axis=1).astype(jnp.int32) - 1
  last_correct = jnp.take_along_axis(correct_BxN, last_B[:, None], axis=1)
  return jnp.sum(nll_BxN * mask_BxN) / total, {
      'accuracy': jnp.sum(correct_BxN) / total,
      'last_point_accuracy': jnp.mean(last_correct)}


def logistic_objective(objective_config, task):
  """Objective factory in training/objectives.py's form: TART's binary cross-entropy of the
  read-out logit at every x position (their `cross_entropy_zero_one`)."""
  del objective_config

  def loss(model, reference, batch, key):
    del reference, key
    return logistic_bce_loss(task.logits(model(task.model_inputs(batch))), batch)
  return loss
