"""Layering and the one registry mechanism: import rules between packages, duplicate refusal,
known names on a miss, temporary registration, every mixer module found without a list."""
import ast
import os
import pkgutil

import pytest

from core import ConfigError, Registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('core', 'data', 'models', 'training', 'analysis', 'baselines')
FORBIDDEN = {
    'core': ('data', 'models', 'training', 'analysis', 'baselines'),
    'data': ('models', 'training', 'analysis'),
    'models': ('data', 'training', 'analysis', 'baselines'),
    'baselines': ('models', 'analysis', 'training'),
}


def _imports(path):
  """(module imported, names imported) of every import statement, at any depth."""
  tree = ast.parse(open(path).read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield alias.name, ()
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      yield node.module, tuple(a.name for a in node.names)


def _files(package):
  for folder, _, names in os.walk(os.path.join(ROOT, package)):
    for name in names:
      if name.endswith('.py'):
        yield os.path.join(folder, name)


@pytest.mark.parametrize('package', sorted(FORBIDDEN))
def test_import_rules(package):
  broken = []
  for path in _files(package):
    for module, _ in _imports(path):
      top = module.split('.')[0]
      if top in FORBIDDEN[package]:
        broken.append(f'{os.path.relpath(path, ROOT)} imports {module}')
  assert not broken, broken


def test_no_private_helpers_imported_across_packages():
  broken = []
  for package in PACKAGES:
    for path in _files(package):
      for module, names in _imports(path):
        top = module.split('.')[0]
        if top in PACKAGES and top != package:
          broken += [f'{os.path.relpath(path, ROOT)}: {module}.{n}' for n in names
                     if n.startswith('_')]
  assert not broken, broken


def test_registry_refuses_duplicates_and_lists_known_names():
  registry = Registry('widget', 'model.widget')
  registry.register('b', size=2)(object)
  registry.register('a')(int)
  with pytest.raises(ValueError, match="widget 'a' registered twice"):
    registry.register('a')(float)
  with pytest.raises(ConfigError, match="config.model.widget='c' is invalid: known widgets "
                                        'are a, b'):
    registry.get('c')
  assert registry.metadata('b') == {'size': 2}
  with registry.temporary('c', str, size=3):
    assert registry['c'] is str and 'c' in registry
  assert 'c' not in registry and sorted(registry) == ['a', 'b']


def test_every_axis_uses_the_one_mechanism():
  from analysis.evaluators import EVALUATORS
  from data import TASKS
  from models.mixers import MIXERS
  from training.objectives import OBJECTIVES
  for registry in (TASKS, MIXERS, OBJECTIVES, EVALUATORS):
    assert isinstance(registry, Registry)
  # metadata lives on the entries, not in tables kept elsewhere
  assert TASKS.metadata('regbench')['eval_family'] == 'regbench'
  assert 'next_token' in TASKS.metadata('regbench')['objectives']
  assert MIXERS.metadata('attention')['needs_positions'] is True
  assert MIXERS.metadata('mamba')['needs_positions'] is False


def test_every_mixer_module_is_found_without_a_list():
  import models.mixers as package
  from models.mixers import MIXERS
  modules = {m.name for m in pkgutil.iter_modules(package.__path__)} - {'base', 'scan_utils'}
  defining = {MIXERS[name].__module__.rsplit('.', 1)[1] for name in MIXERS}
  assert modules == defining
