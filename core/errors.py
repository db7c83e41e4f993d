"""Config errors: raised before anything is compiled or written, with a one-line message."""
from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
  """Bad configuration: raised before anything is compiled, with a one-line message."""


def require(condition: bool, key: str, value: Any, allowed: str) -> None:
  """Raises ConfigError('config.<key>=<value> is invalid: <allowed>') unless `condition`."""
  if not condition:
    raise ConfigError(f'config.{key}={value!r} is invalid: {allowed}')
