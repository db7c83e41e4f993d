"""Orbax checkpoints of the train state: asynchronous saves, retention, integrity checks.

Layout of one checkpoint (orbax 0.12, OCDBT format), `<directory>/<step>/`:

  _CHECKPOINT_METADATA          JSON: item handlers, timestamps
  commit_success.txt            written when the step was finalised
  state/                        the train-state pytree (`ocp.args.StandardSave`)
    _METADATA                   JSON: tree structure, one entry per leaf
    _sharding                   JSON: sharding of every array when saved
    manifest.ocdbt              OCDBT root manifest (binary)
    array_metadatas/process_<i> JSON: write/chunk shapes per process
    ocdbt.process_<i>/manifest.ocdbt, ocdbt.process_<i>/d/<hash>
                                the array bytes (compressed chunks), one store per process
    d/<hash>                    OCDBT b-tree nodes of the root store
  digests/metadata              JSON written by this module: a sha256 of every array leaf

Both items are written into `<step>.orbax-checkpoint-tmp` and the directory is renamed to
`<step>` only when the whole save (digests included) completed, so a save killed half-way
never leaves a checkpoint that `all_steps()` lists, and a listed checkpoint always has its
digests unless something removed them afterwards.

`restore_intact` re-reads the metadata files, restores the arrays, recomputes the digests on
the host and compares; any difference, unreadable file or missing digest raises
`CheckpointDamagedError`. `restore_latest_intact` walks back from the newest checkpoint to the
newest intact one.
"""
from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import sys
from typing import Any, Callable, Container, Dict, Iterable, Optional, Sequence, Tuple, Union

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

STATE_ITEM = 'state'
DIGEST_ITEM = 'digests'
DIGEST_FORMAT = 1
DIGEST_ALGORITHM = 'sha256'
# Orbax's JsonCheckpointHandler stores its item in this file inside the item's directory.
_JSON_ITEM_FILE = 'metadata'


class CheckpointDamagedError(RuntimeError):
  """A checkpoint that cannot be trusted: unreadable, incomplete or not matching its digests."""

  def __init__(self, step: int, reason: str):
    self.step = int(step)
    self.reason = ' '.join(str(reason).split())    # always one line
    super().__init__(f'checkpoint {self.step} is damaged: {self.reason}')


@dataclasses.dataclass
class _KeepSteps:
  """Orbax preservation policy: keeps every checkpoint whose step satisfies `predicate`."""
  predicate: Callable[[int], bool]

  def should_preserve(self, checkpoints, *, context) -> Sequence[bool]:
    del context
    return [bool(self.predicate(int(info.step))) for info in checkpoints]


def _keep_predicate(keep_steps) -> Optional[Callable[[int], bool]]:
  if keep_steps is None:
    return None
  if callable(keep_steps):
    return keep_steps
  steps = frozenset(int(s) for s in keep_steps)
  return steps.__contains__


# ----------------------------------------------------------------------------- digests


def _one_line(error: BaseException) -> str:
  """The innermost cause of `error` (orbax wraps tensorstore's precise message), on one line."""
  seen = set()
  while id(error) not in seen:
    seen.add(id(error))
    inner = error.__cause__ or error.__context__
    if inner is None or isinstance(inner, StopIteration):
      break
    error = inner
  text = ' '.join(str(error).split())
  if len(text) > 300:
    text = text[:300] + '...'
  return f'{type(error).__name__}: {text}' if text else type(error).__name__


def _collect_abandoned_reads() -> None:
  """Collects orbax's abandoned read coroutines quietly after a failed restore.

  When one array fails to read, orbax leaves the other reads' coroutines to the garbage
  collector, which prints each one's exception with a full TensorStore spec to stderr
  ("Exception ignored in: <coroutine _read_array_index_and_device_put>"). That noise is
  the damage we already report in one line, so it is swallowed here; anything else is passed
  to the previous hook.
  """
  previous = sys.unraisablehook

  def hook(unraisable):
    text = f'{unraisable.object!r} {unraisable.exc_value!r}'
    if '_read_array_index_and_device_put' in text or 'Event loop is closed' in text:
      return
    previous(unraisable)

  sys.unraisablehook = hook
  try:
    gc.collect()
  finally:
    sys.unraisablehook = previous


def _index_key(index: Tuple[slice, ...], shape: Tuple[int, ...]) -> str:
  parts = []
  for sl, dim in zip(index, shape):
    start, stop, _ = sl.indices(dim)
    parts.append(f'{start}:{stop}')
  return ','.join(parts)


def _host_view(leaf):
  """(full host array or None, {index_key: host shard}) for one leaf, from addressable data."""
  if isinstance(leaf, jax.Array):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    if leaf.is_fully_addressable:
      return np.asarray(jax.device_get(leaf)), {}
    if leaf.is_fully_replicated:
      return np.asarray(leaf.addressable_shards[0].data), {}
    # Partly addressable (multi-host sharded): assemble what this host holds.
    shape = tuple(leaf.shape)
    full = np.empty(shape, leaf.dtype)
    shards, covered = {}, 0
    for shard in leaf.addressable_shards:
      key = _index_key(shard.index, shape)
      if key in shards:
        continue
      data = np.asarray(shard.data)
      shards[key] = data
      full[shard.index] = data
      covered += data.size
    return (full if covered == full.size else None), shards
  return np.asarray(leaf), {}


def _sha256(array: np.ndarray) -> str:
  return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast('B')).hexdigest()


def _array_leaves(tree) -> Dict[str, Any]:
  """{keystr(path): leaf} for every array-like leaf (orbax skips empty containers)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if leaf is None:
      continue
    out[jax.tree_util.keystr(path)] = leaf
  return out


def compute_digests(state: Any) -> Dict[str, Any]:
  """JSON-able record of shape, dtype and sha256 of every array leaf of `state` (host-side)."""
  leaves = {}
  for name, leaf in _array_leaves(state).items():
    full, shards = _host_view(leaf)
    if full is not None:
      record = {'shape': list(full.shape), 'dtype': str(full.dtype),
                DIGEST_ALGORITHM: _sha256(full)}
    else:
      record = {'shape': list(leaf.shape), 'dtype': str(next(iter(shards.values())).dtype)}
      record['shards'] = {key: _sha256(data) for key, data in sorted(shards.items())}
    leaves[name] = record
  return {'format': DIGEST_FORMAT, 'algorithm': DIGEST_ALGORITHM, 'leaves': leaves}


def _verify_digests(step: int, state: Any, record: Dict[str, Any]) -> None:
  for name, leaf in _array_leaves(state).items():
    expected = record['leaves'][name]
    full, shards = _host_view(leaf)
    if DIGEST_ALGORITHM in expected:
      if full is None:
        continue    # this host cannot see the whole array; the hosts that can will check it
      if list(full.shape) != list(expected['shape']):
        raise CheckpointDamagedError(step, f'array {name} was restored with shape '
                                     f'{list(full.shape)}, digest says {expected["shape"]}')
      if _sha256(full) != expected[DIGEST_ALGORITHM]:
        raise CheckpointDamagedError(step, f'array {name} does not match its {DIGEST_ALGORITHM} '
                                     f'digest (data changed on disk)')
    else:
      for key, data in shards.items():
        want = expected['shards'].get(key)
        if want is not None and _sha256(data) != want:
          raise CheckpointDamagedError(step, f'shard [{key}] of array {name} does not match '
                                       f'its {DIGEST_ALGORITHM} digest (data changed on disk)')


# ----------------------------------------------------------------------------- checkpointer


class Checkpointer:
  """`ocp.CheckpointManager` for a `{params, opt_state, step}` pytree, with digests.

  Keeps the last `keep` checkpoints plus every step for which `keep_steps` (a callable
  step -> bool, or a container of steps) is true.
  """

  def __init__(self, directory: str, keep: int, async_save: bool = True, read_only=False,
               keep_steps: Union[None, Callable[[int], bool], Container[int], Iterable[int]] = None):
    if keep is not None and keep < 1:
      raise ValueError(f'keep must be at least 1, got {keep}')
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    self.keep = keep
    self.keep_steps = _keep_predicate(keep_steps)
    policy = None
    if not read_only:      # a read-only manager never deletes; orbax refuses a policy there
      policies = [ocm.LatestN(n=keep)]
      if self.keep_steps is not None:
        policies.append(_KeepSteps(self.keep_steps))
      policy = ocm.AnyPreservationPolicy(policies)
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, create=not read_only, read_only=read_only,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=not read_only)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(),
                       DIGEST_ITEM: ocp.JsonCheckpointHandler()})

  # --- listing

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self):
    return sorted(int(s) for s in self.manager.all_steps())

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(int(step)))

  # --- saving

  def save(self, step: int, state: Any) -> None:
    """Starts an (asynchronous) save of `state` and its digests.

    Every process must call this with the same step. The digests are computed here, on the
    host, from this process's addressable data; only process 0's copy is written (orbax's
    JSON handler writes on the primary host). An existing checkpoint at the same step (from
    an abandoned or damaged trajectory we resumed before) is deleted first.
    """
    step = int(step)
    if step in self.all_steps():
      self.manager.wait_until_finished()
      self.manager.delete(step)
    digests = compute_digests(state) if jax.process_index() == 0 else {}
    self.manager.save(step, args=ocp.args.Composite(**{
        STATE_ITEM: ocp.args.StandardSave(state),
        DIGEST_ITEM: ocp.args.JsonSave(digests)}), force=True)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  # --- restoring

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores into the shapes, dtypes and shardings of `abstract_state`, checking digests."""
    return self.restore_intact(step, abstract_state)

  def _read_json(self, step: int, *parts: str, what: str):
    path = os.path.join(self.step_dir(step), *parts)
    rel = os.path.join(str(step), *parts)
    try:
      with open(path, 'rb') as f:
        raw = f.read()
    except FileNotFoundError:
      return None
    except OSError as e:
      raise CheckpointDamagedError(step, f'{what} {rel} is unreadable ({e.strerror})') from e
    if not raw.strip():
      raise CheckpointDamagedError(step, f'{what} {rel} is empty')
    try:
      value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
      raise CheckpointDamagedError(step, f'{what} {rel} is not valid JSON ({e})') from e
    if not isinstance(value, dict):
      raise CheckpointDamagedError(step, f'{what} {rel} is not a JSON object')
    return value

  def read_digests(self, step: int) -> Dict[str, Any]:
    """The digest record of a checkpoint; raises CheckpointDamagedError if missing or bad."""
    record = self._read_json(step, DIGEST_ITEM, _JSON_ITEM_FILE, what='digest file')
    if record is None:
      raise CheckpointDamagedError(
          step, f'no digest recorded ({DIGEST_ITEM}/{_JSON_ITEM_FILE} missing: written by an '
          f'older version or the file was removed)')
    if (record.get('format') != DIGEST_FORMAT or record.get('algorithm') != DIGEST_ALGORITHM
        or not isinstance(record.get('leaves'), dict)):
      raise CheckpointDamagedError(step, f'digest file {step}/{DIGEST_ITEM}/{_JSON_ITEM_FILE} '
                                   f'has an unknown format')
    for name, leaf in record['leaves'].items():
      if not (isinstance(leaf, dict) and 'shape' in leaf and 'dtype' in leaf
              and (DIGEST_ALGORITHM in leaf or 'shards' in leaf)):
        raise CheckpointDamagedError(step, f'digest of array {name} is incomplete')
    return record

  def _check_metadata(self, step: int) -> None:
    if not os.path.isdir(self.step_dir(step)):
      raise CheckpointDamagedError(step, f'directory {self.step_dir(step)} is missing')
    meta = self._read_json(step, '_CHECKPOINT_METADATA', what='metadata file')
    if meta is None:
      raise CheckpointDamagedError(step, 'metadata file _CHECKPOINT_METADATA is missing')
    tree = self._read_json(step, STATE_ITEM, '_METADATA', what='metadata file')
    if tree is None:
      raise CheckpointDamagedError(step, f'metadata file {step}/{STATE_ITEM}/_METADATA is missing')
    if not isinstance(tree.get('tree_metadata'), dict):
      raise CheckpointDamagedError(step, f'metadata file {step}/{STATE_ITEM}/_METADATA holds no '
                                   f'tree metadata')
    self._read_json(step, STATE_ITEM, '_sharding', what='metadata file')   # optional file
    array_dir = os.path.join(self.step_dir(step), STATE_ITEM, 'array_metadatas')
    if os.path.isdir(array_dir):
      for name in sorted(os.listdir(array_dir)):
        self._read_json(step, STATE_ITEM, 'array_metadatas', name, what='metadata file')

  def restore_intact(self, step: int, abstract_state: Any) -> Any:
    """Restores checkpoint `step` into `abstract_state`'s shapes, dtypes and shardings.

    Raises CheckpointDamagedError (one-line reason) if a metadata or data file is missing,
    empty or unreadable, or an array does not match its recorded digest; FileNotFoundError if
    there is no checkpoint at `step`; ValueError if the checkpoint is intact but holds a
    different state structure or shapes than `abstract_state` (a different model).
    """
    step = int(step)
    if step not in self.all_steps():
      raise FileNotFoundError(f'no complete checkpoint at step {step} in {self.directory}; '
                              f'available steps: {self.all_steps() or "none"}')
    self._check_metadata(step)
    record = self.read_digests(step)

    abstract_leaves = _array_leaves(abstract_state)
    missing = sorted(set(abstract_leaves) - set(record['leaves']))
    extra = sorted(set(record['leaves']) - set(abstract_leaves))
    if missing or extra:
      raise ValueError(f'checkpoint {step} holds a different state than expected (missing: '
                       f'{", ".join(missing[:3]) or "-"}; unexpected: {", ".join(extra[:3]) or "-"})')

    # Restore in the dtypes that were saved (so the bytes can be checked), cast afterwards.
    def target_of(path, leaf):
      if leaf is None:
        return None
      struct = ocp.utils.to_shape_dtype_struct(leaf)
      saved = record['leaves'][jax.tree_util.keystr(path)]
      if list(struct.shape) != list(saved['shape']):
        raise ValueError(f'checkpoint {step}: array {jax.tree_util.keystr(path)} has shape '
                         f'{saved["shape"]}, expected {list(struct.shape)}')
      dtype = np.dtype(saved['dtype']) if 'key<' not in str(struct.dtype) else struct.dtype
      return jax.ShapeDtypeStruct(struct.shape, dtype, sharding=getattr(struct, 'sharding', None))

    target = jax.tree_util.tree_map_with_path(target_of, abstract_state)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**{
          STATE_ITEM: ocp.args.StandardRestore(target)}))[STATE_ITEM]
      _verify_digests(step, restored, record)
    except CheckpointDamagedError:
      raise
    except Exception as e:    # noqa: BLE001 - any failure to read a structurally valid checkpoint
      _collect_abandoned_reads()
      raise CheckpointDamagedError(step, f'could not read the arrays ({_one_line(e)})') from e

    def cast(value, abstract):
      if value is None or abstract is None:
        return value
      dtype = ocp.utils.to_shape_dtype_struct(abstract).dtype
      return value if value.dtype == dtype else value.astype(dtype)

    return jax.tree.map(cast, restored, abstract_state, is_leaf=lambda x: x is None)

  def restore_latest_intact(self, abstract_state: Any, log: Callable[[str], Any] = print,
                            max_step: Optional[int] = None
                            ) -> Tuple[Optional[int], Optional[Any]]:
    """(step, state) of the newest checkpoint (at most `max_step`) that restores intact.

    Damaged checkpoints are skipped with one log line each (`skipped checkpoint 40: <reason>`);
    (None, None) when no intact checkpoint exists.
    """
    steps = [s for s in self.all_steps() if max_step is None or s <= max_step]
    for step in reversed(steps):
      try:
        return step, self.restore_intact(step, abstract_state)
      except CheckpointDamagedError as e:
        log(f'skipped checkpoint {step}: {e.reason}')
    return None, None
