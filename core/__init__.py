"""The bottom layer every package may import: config errors, task/model shapes, registries.

Nothing here imports `data`, `models`, `training`, `analysis` or `baselines`, so following a
config key never climbs back up the layers.
"""
from core.errors import ConfigError, require  # noqa: F401
from core.interfaces import Batch, ModelIO  # noqa: F401
from core.registry import Registry  # noqa: F401
