"""The frozen reference of a run that started from another (preference objectives): its
parameters, saved once in `<workdir>/reference/`, and the reference model of a restored run."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import jax
from jax.sharding import NamedSharding, PartitionSpec as P


class ReferenceStore:
  """The frozen reference parameters of a run, saved once in `<workdir>/reference/`."""

  def __init__(self, workdir: str, mesh):
    self.directory = os.path.abspath(os.path.join(workdir, 'reference'))
    self.replicated = NamedSharding(mesh, P())

  def exists(self) -> bool:
    return os.path.isdir(os.path.join(self.directory, 'params'))

  def save(self, frozen, shared: bool) -> None:
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(os.path.join(self.directory, 'params.orbax-tmp'), frozen)
      ckptr.wait_until_finished()
    if jax.process_index() == 0:
      os.replace(os.path.join(self.directory, 'params.orbax-tmp'),
                 os.path.join(self.directory, 'params'))
      with open(os.path.join(self.directory, 'shared'), 'w') as f:
        f.write('1' if shared else '0')

  def restore(self):
    import orbax.checkpoint as ocp
    with open(os.path.join(self.directory, 'shared')) as f:
      shared = f.read().strip() == '1'
    with ocp.StandardCheckpointer() as ckptr:
      frozen = ckptr.restore(os.path.join(self.directory, 'params'))
    return jax.device_put(frozen, self.replicated), shared


def reference_model(run: Dict[str, Any], seed_index: int) -> Optional[Any]:
  """The nnx model of seed `seed_index`'s frozen reference, or None when the run has none."""
  from flax import nnx
  if not run.get('workdir'):   # a run held in memory only (no work directory): no reference
    return None
  store = ReferenceStore(run['workdir'], jax.sharding.Mesh(jax.devices()[:1], ('data',)))
  if not store.exists():
    return None
  frozen, shared = store.restore()
  take = lambda tree: jax.tree.map(lambda x: x[seed_index], tree)
  params = frozen if shared else take(frozen)
  rest = take(run['rest'])
  return nnx.merge(run['graphdef'], jax.device_get(params), rest)
