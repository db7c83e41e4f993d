"""One function over the leading seed axis of a run's arrays, in the layout that runs it fastest."""
from __future__ import annotations

import jax


def over_seeds(fn, args: tuple, num_seeds: int, shared: frozenset = frozenset(),
               group: int | None = None):
  """`fn(*args)` for every seed: args[i] carries a leading seed axis of size num_seeds, except
  the indices in `shared`, passed whole to every seed. Returns fn's outputs stacked over seeds.

  group = None or >= num_seeds: one `vmap` over all seeds; 1 <= group < num_seeds: a `lax.map`
  over groups of `group` vmapped seeds (group 1: each seed runs the single model's shapes). A
  single seed runs unbatched: XLA's CPU backend runs a `lax.scan` vmapped over a size-1 axis
  several times slower than the plain scan (Mamba's selective scan, forward and backward: 4x).
  """
  fixed = {i: args[i] for i in shared}
  batched = tuple(None if i in shared else a for i, a in enumerate(args))

  def one(*per_seed):
    return fn(*(fixed[i] if i in shared else a for i, a in enumerate(per_seed)))

  if num_seeds == 1:
    out = one(*jax.tree.map(lambda a: a[0], batched))
    return jax.tree.map(lambda a: a[None], out)
  if group is None or group >= num_seeds:
    return jax.vmap(one)(*batched)
  return jax.lax.map(lambda a: one(*a), batched, batch_size=None if group == 1 else group)
