"""The compiled train call: `num_steps` fused train steps of every seed (the scheduled eval
is runlib/positions.py).

State layout (every leaf has a leading seed axis N, also when N = 1):
  state = {'params': Params_N, 'opt_state': OptState_N, 'step': int32 scalar}
  frozen = reference parameters (leading axis N, or no seed axis when shared by every seed)
           or None; passed beside the state, never donated, never in the gradient.
  rest = the model's non-parameter variables, one per seed (rebuilt from the seed, not saved).

Seed i of a run is exactly a single run with seed_i: its own initialisation, data key
`fold_in(key(seed_i), 1)`, per-seed task and optimiser values, all under one `vmap`.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from models.model import build_model
from runlib.seeds import over_seeds
from training.optimizer import learning_rate_schedule, make_optimizer
from training.setup import Setup


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def seed_models(setup: Setup):
  """(graphdef, params_N, rest_N): one model per seed, built exactly as a single run would."""
  io = setup.task.io()
  params, rests = [], []
  graphdef = None
  for i, seed in enumerate(setup.seeds):
    model = setup.model if i == 0 else build_model(io, setup.config.model, seed=seed)
    graphdef, p, r = nnx.split(model, nnx.Param, ...)
    params.append(p)
    rests.append(r)
  return graphdef, _stack(params), _stack(rests)


def _optimizer(setup: Setup, values: Dict[str, Any]):
  return make_optimizer(setup.config.train, learning_rate=values.get('learning_rate'),
                        weight_decay=values.get('weight_decay'))


def _seed_values(setup: Setup) -> Dict[str, Dict[str, jax.Array]]:
  """Per-seed values as device arrays with leading axis N ({} when none vary)."""
  return {'train': {k: jnp.asarray(v) for k, v in setup.train_values().items()},
          'task': {k: jnp.asarray(v) for k, v in setup.task_values().items()}}


def init_state(setup: Setup, params_N=None):
  """(graphdef, rest_N, state) with the state replicated over the mesh.

  `params_N` (e.g. from another run, `train.init_from`) replaces the fresh initialisation.
  """
  graphdef, fresh_N, rest_N = seed_models(setup)
  params_N = fresh_N if params_N is None else params_N
  opt_state_N = jax.vmap(lambda p: _optimizer(setup, {}).init(p))(params_N)
  state = {'params': params_N, 'opt_state': opt_state_N, 'step': jnp.zeros((), jnp.int32)}
  replicated = NamedSharding(setup.mesh, P())
  return graphdef, jax.device_put(rest_N, replicated), jax.device_put(state, replicated)


def data_keys(setup: Setup) -> jax.Array:
  return jnp.stack([jax.random.fold_in(jax.random.key(s), 1) for s in setup.seeds])


def resolve_seed_batch(seed_batch: int, num_seeds: int) -> int:
  """Seeds vmapped together in one step; 0 (auto): all of them on an accelerator, one at a
  time (a `lax.map` inside the same compiled step) on the CPU, where `python bench.py
  --seeds=1,8,32` measured the vmapped step 17-24% slower per seed than single runs and
  the loop within 3%."""
  if seed_batch == 0:
    return 1 if jax.default_backend() == 'cpu' else num_seeds
  return min(seed_batch, num_seeds)


def make_train_fn(setup: Setup, graphdef, num_steps: int, frozen_shared: bool = False):
  """Jitted `(state, rest_N, frozen) -> (state, metrics)`, `num_steps` fused train steps.

  metrics: name -> array (num_steps, N). The state is donated; rest and frozen are not.
  """
  config, task, loss_fn = setup.config, setup.task, setup.loss
  batch_size = config.train.batch_size
  keys_N = data_keys(setup)
  values = _seed_values(setup)
  batch_sharding = NamedSharding(setup.mesh, P(None, 'data'))
  replicated = NamedSharding(setup.mesh, P())

  def sample(key, task_values, step):
    return task.bind(task_values).sample(jax.random.fold_in(key, step), batch_size, step)

  def seed_step(params, opt_state, rest, frozen, batch, key, train_values, step):
    bound = dict(train_values)
    optimizer = _optimizer(setup, bound)

    def objective(p):
      model = nnx.merge(graphdef, p, rest)
      reference = None if frozen is None else nnx.merge(graphdef, frozen, rest)
      return loss_fn(model, reference, batch, key)

    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    lr = learning_rate_schedule(config.train, bound.get('learning_rate'))(step)
    metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads), 'learning_rate': lr, **aux}
    return params, opt_state, metrics

  def one_step(state, rest_N, frozen):
    step = state['step']
    batch_N = over_seeds(lambda k, v: sample(k, v, step), (keys_N, values['task']),
                         setup.num_seeds)
    batch_N = jax.lax.with_sharding_constraint(batch_N, batch_sharding)
    # A per-step key for objectives that sample inside the step (seed-specific).
    step_keys_N = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, step), 1))(keys_N)
    params, opt_state, metrics = over_seeds(
        lambda p, o, r, f, b, k, v: seed_step(p, o, r, f, b, k, v, step),
        (state['params'], state['opt_state'], rest_N, frozen, batch_N, step_keys_N,
         values['train']), setup.num_seeds, shared=frozenset({3} if frozen_shared else ()),
        group=seed_batch)
    if forget_every:
      params, opt_state = _forget(params, opt_state, step + 1, keys_N)
    return {'params': params, 'opt_state': opt_state, 'step': step + 1}, metrics

  seed_batch = resolve_seed_batch(config.train.seed_batch, setup.num_seeds)

  forget_every = config.train.forget_every
  forget_modules = tuple(m.strip() for m in str(config.train.forget_modules).split(',')
                         if m.strip())

  def _forget(params_N, opt_state_N, step, keys_N):
    """Weight forgetting: every `forget_every` steps the parameters of `forget_modules` (the
    embeddings by default) are drawn afresh (N(0, 0.02) matrices, zero biases) and their
    optimiser moments zeroed; the rest of the model keeps learning."""
    reset = (step % forget_every) == 0

    def fresh(path, leaf_N, salt):
      names = [str(getattr(k, 'key', getattr(k, 'name', k))) for k in path]
      if not any(n in forget_modules for n in names):
        return leaf_N
      if leaf_N.ndim >= 3 and salt is not None:     # a matrix per seed: redraw
        keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, step), salt))(keys_N)
        new = jax.vmap(lambda k: 0.02 * jax.random.normal(k, leaf_N.shape[1:], leaf_N.dtype))(
            keys)
      else:
        new = jnp.zeros_like(leaf_N)
      return jnp.where(reset, new, leaf_N)

    leaves = jax.tree_util.tree_flatten_with_path(params_N)[0]
    salts = {tuple(path): i for i, (path, _) in enumerate(leaves)}
    params_N = jax.tree_util.tree_map_with_path(
        lambda path, leaf: fresh(path, leaf, salts.get(tuple(path))), params_N)
    opt_state_N = jax.tree_util.tree_map_with_path(
        lambda path, leaf: fresh(path, leaf, None) if hasattr(leaf, 'ndim') and leaf.ndim >= 1
        else leaf, opt_state_N)
    return params_N, opt_state_N

  def run(state, rest_N, frozen):
    return jax.lax.scan(lambda s, _: one_step(s, rest_N, frozen), state, None,
                        length=num_steps)

  return jax.jit(run, donate_argnums=0, out_shardings=(replicated, replicated))
