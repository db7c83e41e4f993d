"""One registry mechanism for every axis of ablation (tasks, mixers, objectives, evaluators).

A registry maps a config name to a constructor plus metadata. It refuses duplicates, names the
known entries on a miss (as a ConfigError naming the config key), and lets a test register an
entry for the duration of a `with` block.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, Optional

from core.errors import ConfigError


class Registry:
  """`name -> entry` with per-entry metadata.

  `register(name, **metadata)` is a decorator; metadata is stored on the registry and, for
  classes, readable as class attributes too. `get(name)` raises ConfigError listing the known
  names; `config_key` is the config path quoted in that message ('task.name').
  """

  def __init__(self, kind: str, config_key: str):
    self.kind = kind
    self.config_key = config_key
    self._entries: Dict[str, Any] = {}
    self._metadata: Dict[str, Dict[str, Any]] = {}

  def register(self, name: str, **metadata) -> Callable[[Any], Any]:
    def wrap(entry):
      if name in self._entries:
        raise ValueError(f'{self.kind} {name!r} registered twice')
      self._entries[name] = entry
      self._metadata[name] = dict(metadata)
      return entry
    return wrap

  def get(self, name: Optional[str]) -> Any:
    if name not in self._entries:
      raise ConfigError(f'config.{self.config_key}={name!r} is invalid: known {self.kind}s are '
                        f'{", ".join(sorted(self._entries))}')
    return self._entries[name]

  def metadata(self, name: str) -> Dict[str, Any]:
    self.get(name)
    return dict(self._metadata[name])

  @contextlib.contextmanager
  def temporary(self, name: str, entry: Any, **metadata) -> Iterator[Any]:
    """Registers `entry` under `name` inside the block only (for tests)."""
    self.register(name, **metadata)(entry)
    try:
      yield entry
    finally:
      self._entries.pop(name, None)
      self._metadata.pop(name, None)

  # Mapping-style access, so `name in REG`, `REG[name]`, `sorted(REG)` read naturally.
  def __contains__(self, name) -> bool:
    return name in self._entries

  def __getitem__(self, name: str) -> Any:
    return self.get(name)

  def __iter__(self):
    return iter(self._entries)

  def __len__(self) -> int:
    return len(self._entries)

  def items(self):
    return self._entries.items()

  def keys(self):
    return self._entries.keys()
