"""Orbax checkpoints of the train state: asynchronous saves, last K kept, resume from latest.

Orbax writes each save into a temporary directory and renames it when complete, so a save
killed half-way leaves a `<step>.orbax-checkpoint-tmp-*` directory that `all_steps()` does not
list: restoring picks the last complete checkpoint.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` for a `{params, opt_state, step}` pytree."""

  def __init__(self, directory: str, keep: int, async_save: bool = True, read_only=False):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=not read_only, read_only=read_only,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=not read_only)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self):
    return list(self.manager.all_steps())

  def save(self, step: int, state: Any) -> None:
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores into the shapes, dtypes and shardings of `abstract_state`."""
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    return self.manager.restore(step, args=ocp.args.StandardRestore(target))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
