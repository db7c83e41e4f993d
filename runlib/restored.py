"""What a restored run gives without the training code: one seed's model, and the parameters
of any other kept checkpoint.

A restored run is the dict `training.loop.restore_run` returns: 'graphdef', 'params' and
'rest' (leading seed axis N), 'workdir', 'step', 'steps' (the kept checkpoints) and
'template' (the train state a checkpoint is restored into).
"""
from __future__ import annotations

import os
from typing import Any, Dict

import jax

from runlib.checkpoint import CheckpointDamagedError, Checkpointer


def seed_model(run: Dict[str, Any], seed_index: int):
  """The nnx model of one seed of a restored run."""
  from flax import nnx
  take = lambda tree: jax.tree.map(lambda x: x[seed_index], tree)
  return nnx.merge(run['graphdef'], take(run['params']), take(run['rest']))


def load_checkpoint_params(run: Dict[str, Any], step: int, log=print):
  """params_N of another checkpoint of a restored run (checked like any restore); None when
  that checkpoint is damaged (the skip is logged)."""
  checkpointer = Checkpointer(os.path.join(run['workdir'], 'checkpoints'), keep=1,
                              read_only=True)
  try:
    return checkpointer.restore_intact(step, run['template'])['params']
  except CheckpointDamagedError as e:
    log(f'skipped checkpoint {step}: {e}')
    return None
  finally:
    checkpointer.close()
