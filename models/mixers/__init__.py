"""Registry of sequence mixers: `config.model.mixer` picks one (or a per-layer pattern).

Every module in this package is imported here, so a new mixer is one file with a `@register`
line: no list to keep by hand.
"""
import importlib
import pkgutil

from models.mixers.base import MIXERS, Mixer, MixerSpec, register  # noqa: F401

_HELPERS = ('base', 'scan_utils')
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if _info.name not in _HELPERS:
    importlib.import_module(f'{__name__}.{_info.name}')
