"""The compiled per-position evaluation of a run, and the scores read from its curves.

`make_eval_fn` is both the training loop's scheduled evaluation and what the analysis runs
over a run's kept checkpoints. It reads a run's setup (`training.setup.Setup`: its task,
config, model, loss, mesh and per-seed task values) without importing the training code.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from runlib.seeds import over_seeds


def make_eval_fn(setup, graphdef, num_prompts: int, seed: int,
                 frozen_shared: bool = False):
  """Jitted `(params_N, rest_N, frozen) -> {metric: array (N, positions) or (N,)}`.

  The prompts are the same at every call (drawn from `key(seed)`, bound to each seed's task
  values), so curves from different steps compare the same prompts. An objective with an
  `evaluate(model, reference, batch, key)` (e.g. preference objectives: win rate, KL) adds its
  scalars when the run has a reference.
  """
  task = setup.task
  task_values_N = {k: jnp.asarray(v) for k, v in setup.task_values().items()}
  key = jax.random.key(seed)
  replicated = NamedSharding(setup.mesh, P())
  objective_eval = getattr(setup.loss, 'evaluate', None)

  def seed_eval(params, rest, frozen, task_values):
    bound = task.bind(task_values)
    batch = bound.sample(key, num_prompts, setup.config.train.num_steps)
    model = nnx.merge(graphdef, params, rest)
    metrics = dict(bound.position_metrics(model(bound.model_inputs(batch)), batch))
    metrics.update(split_metrics(bound, model))
    if objective_eval is not None and frozen is not None:
      reference = nnx.merge(graphdef, frozen, rest)
      count = min(num_prompts, getattr(setup.loss, 'eval_prompts', num_prompts))
      small = jax.tree.map(lambda x: x[:count], batch)
      metrics.update(objective_eval(model, reference, small, jax.random.fold_in(key, 1)))
    return metrics

  splits = tuple(getattr(task, 'schedule_splits', ()))
  attention_split = getattr(task, 'attention_split', None)
  with_attention = (attention_split is not None and hasattr(task, 'attention_targets')
                    and bool(setup.model.attention_layers()))

  def split_metrics(bound, model):
    """Query accuracy and loss on each of the task's `schedule_splits` (e.g. in-context and
    in-weights prompts), and for attention models the strongest head's score for each of the
    task's `attention_targets` (e.g. Reddy's induction head), on fixed prompts."""
    out = {}
    for i, split in enumerate(sorted(set(splits) | ({attention_split} if with_attention
                                                        else set()))):
      batch = bound.sample_split(jax.random.fold_in(key, 1000 + i), num_prompts, split)
      inputs = bound.model_inputs(batch)
      if with_attention and split == attention_split:
        outputs, maps = model.attention_maps(inputs)
        for name, (queries, mask) in bound.attention_targets(batch).items():
          out[f'{name}_score'] = jnp.max(attention_target_scores(maps, queries, mask))
      else:
        outputs = model(inputs)
      if split in splits:
        scores = bound.query_scores(outputs, batch)
        out[f'{split}_accuracy'] = jnp.mean(scores['correct_BxQ'][:, -1])
        out[f'{split}_loss'] = jnp.mean(scores['loss_BxQ'][:, -1])
    return out

  def run(params_N, rest_N, frozen=None):
    num_seeds = jax.tree.leaves(params_N)[0].shape[0]
    return over_seeds(seed_eval, (params_N, rest_N, frozen, task_values_N), num_seeds,
                      shared=frozenset({2} if frozen_shared else ()))

  return jax.jit(run, out_shardings=replicated)


def icl_score(curve_NxP: np.ndarray) -> np.ndarray:
  """Late minus early: mean of the last quarter of positions minus mean of the first quarter
  after position 0 (negative when the metric falls as the context grows, i.e. in-context
  learning for a loss). Olsson et al. take loss(500th token) - loss(50th token)."""
  curve = np.asarray(curve_NxP, np.float64)
  defined = np.flatnonzero(np.all(np.isfinite(curve.reshape(-1, curve.shape[-1])), axis=0))
  curve = curve[..., defined]           # positions without targets (padding) are NaN
  positions = curve.shape[-1]
  if positions == 0:
    return np.full(curve.shape[:-1], np.nan)
  quarter = max(positions // 4, 1)
  early = curve[..., 1:1 + quarter] if positions > 1 else curve
  return curve[..., -quarter:].mean(-1) - early.mean(-1)


def attention_target_scores(maps_LxBxHxTxT, query_positions, target_mask_BxQxT):
  """(L, H): the attention mass the query positions put on their targets, averaged over
  prompts and queries (NumPy or jax arrays; jittable). A head attending only to the targets
  scores 1."""
  rows_LxBxHxQxT = jnp.asarray(maps_LxBxHxTxT)[..., jnp.asarray(query_positions), :]
  mass_LxBxHxQ = jnp.einsum('lbhqt,bqt->lbhq', rows_LxBxHxQxT,
                            jnp.asarray(target_mask_BxQxT, rows_LxBxHxQxT.dtype))
  return mass_LxBxHxQ.mean(axis=(1, 3))
