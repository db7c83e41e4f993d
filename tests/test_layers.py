"""Layering and the one registry mechanism: the layer order between packages (no import goes
up or sideways, no cycle), duplicate refusal, known names on a miss, temporary registration,
every mixer module found without a list."""
import ast
import os
import pkgutil

import pytest

from core import ConfigError, Registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The layer order, in one place: each unit names the units it sits on; it may import those and
# everything below them, nothing else. A unit is a top-level package or module, or
# configs.common (the config schema runs read back; the experiment files beside it may name
# what training defines). Reading up from the bottom:
#   core < data, models < baselines < runlib, configs.common < training, analysis
#        < cli, configs < studies and the entry points
# (models sits beside data and baselines, and training beside analysis: neither side imports
# the other; what both need of a run is in runlib, and a hook of analysis reaches the training
# loop as an argument from above). The code of an entry point (`def main`,
# `if __name__ == '__main__':`) is at the top, whatever file holds it.
SITS_ON = {
    'core': (),
    'data': ('core',),
    'models': ('core',),
    'baselines': ('data',),
    'runlib': ('data', 'models'),
    'configs.common': ('baselines', 'models'),
    'analysis': ('baselines', 'runlib'),
    'training': ('runlib', 'configs.common'),
    'cli': ('training', 'analysis'),
    'configs': ('training',),
    'studies': ('cli', 'configs'),
    'train': ('cli',),
    'eval': ('cli',),
    'sweep': ('cli',),
    'bench': ('cli',),
}
# Pairs of units of which neither may import the other, at any depth: the order above leaves
# them side by side, and this keeps a later edit of it from stacking one on the other.
SIDE_BY_SIDE = (('training', 'analysis'), ('models', 'data'), ('models', 'baselines'))
# Directories at the top that hold no importable code of the lab.
NOT_UNITS = ('tests', 'docs', 'runs', 'workdirs')
# Modules that are only a command line (`python -m ...`, imported by no lab code): they sit at
# the top, whatever folder holds them.
COMMAND_LINE_MODULES = ('data/build_regbench.py',)
# Imports against the order that are known and not yet undone, as (file, imported unit).
# data/piecewise.py checks `task.switch` against, and scores with, the exact predictor of
# baselines/changepoint.py while baselines/ reads data/ (the one cycle left between packages).
KNOWN_AGAINST_THE_ORDER = {('data/piecewise.py', 'baselines')}


def below(sits_on=SITS_ON):
  """unit -> every unit it may import (the closure of `sits_on`)."""
  closure = {}

  def visit(unit, path=()):
    if unit in path:
      raise ValueError(f'the layer order has a cycle: {" -> ".join(path + (unit,))}')
    if unit not in closure:
      reach = set()
      for lower in sits_on[unit]:
        reach |= {lower} | visit(lower, path + (unit,))
      closure[unit] = reach
    return closure[unit]

  for unit in sits_on:
    visit(unit)
  return closure


def discover_units(root):
  """Top-level packages (folders with __init__.py) and modules under `root`."""
  units = set()
  for name in os.listdir(root):
    path = os.path.join(root, name)
    if name.startswith('.') or name in NOT_UNITS:
      continue
    if os.path.isfile(os.path.join(path, '__init__.py')):
      units.add(name)
    elif name.endswith('.py') and os.path.isfile(path):
      units.add(name[:-3])
  return units


def unit_of(module, units):
  """The unit a dotted module name belongs to (the longest unit it starts with), or None for
  a module outside the lab (the standard library, jax, ...)."""
  parts = module.split('.')
  for count in range(len(parts), 0, -1):
    if '.'.join(parts[:count]) in units:
      return '.'.join(parts[:count])
  return None


def _is_entry_point(statement):
  """`def main` or `if __name__ == '__main__':` at module level: the code of
  `python -m package.module`, an entry point wherever its file lives."""
  if isinstance(statement, ast.FunctionDef):
    return statement.name == 'main'
  if isinstance(statement, ast.If) and isinstance(statement.test, ast.Compare):
    names = [statement.test.left] + list(statement.test.comparators)
    return {getattr(n, 'id', getattr(n, 'value', None)) for n in names} == {'__name__',
                                                                           '__main__'}
  return False


def _imports(path, skip_entry_points=False):
  """(module imported, names imported, line) of every absolute import statement, at any
  depth (inside functions too); with `skip_entry_points`, not those of entry-point code."""
  tree = ast.parse(open(path).read(), path)
  for statement in tree.body:
    if skip_entry_points and _is_entry_point(statement):
      continue
    for node in ast.walk(statement):
      if isinstance(node, ast.Import):
        for alias in node.names:
          yield alias.name, (), node.lineno
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        yield node.module, tuple(a.name for a in node.names), node.lineno


def _files(root, unit):
  top = os.path.join(root, *unit.split('.'))
  if os.path.isfile(top + '.py'):
    yield top + '.py'
  for folder, _, names in os.walk(top):
    for name in sorted(names):
      if name.endswith('.py'):
        yield os.path.join(folder, name)


def import_edges(root, units, command_lines=()):
  """(file, line, importing unit, imported module, imported unit) of every import of one
  unit by another; entry-point code and the `command_lines` files left out."""
  edges = []
  for unit in sorted({u.split('.')[0] for u in units}):
    for path in _files(root, unit):
      relative = os.path.relpath(path, root)
      if relative in command_lines:
        continue
      source = unit_of(relative[:-3].replace(os.sep, '.').removesuffix('.__init__'), units)
      for module, _, line in _imports(path, skip_entry_points=True):
        target = unit_of(module, units)
        if target is not None and target != source:
          edges.append((relative, line, source, module, target))
  return edges


def against_the_order(edges, sits_on=SITS_ON, known=frozenset()):
  """'file:line: unit imports module' for every import of a unit not below the importer."""
  allowed = below(sits_on)
  return [f'{path}:{line}: {source} imports {module} ({target} is not below {source})'
          for path, line, source, module, target in edges
          if target not in allowed.get(source, set()) and (path, target) not in known]


def cycles(edges, known=frozenset()):
  """Every set of two or more units that import each other, directly or through others."""
  graph = {}
  for path, _, source, module, target in edges:
    if (path, target) not in known:
      graph.setdefault(source, set()).add(target)
  reach = {}
  for start in graph:
    seen, stack = set(), [start]
    while stack:
      for nxt in graph.get(stack.pop(), ()):
        if nxt not in seen:
          seen.add(nxt)
          stack.append(nxt)
    reach[start] = seen
  groups = {frozenset({u} | {v for v in reach[u] if u in reach.get(v, ())}) for u in graph}
  return sorted(sorted(g) for g in groups if len(g) > 1)


def lab_order(root=ROOT):
  """SITS_ON, and above all of it every top-level script it does not name (an entry point
  such as a new benchmark command); a package must be named."""
  scripts = {u for u in discover_units(root) if os.path.isfile(os.path.join(root, u + '.py'))}
  return {**{u: tuple(SITS_ON) for u in scripts - set(SITS_ON)}, **SITS_ON}


def _lab_edges():
  return import_edges(ROOT, set(lab_order()), COMMAND_LINE_MODULES)


def test_every_package_has_a_place_in_the_layer_order():
  assert discover_units(ROOT) <= set(lab_order()), discover_units(ROOT) - set(lab_order())
  below()   # raises when the declared order itself has a cycle


@pytest.mark.parametrize('unit', sorted(lab_order()))
def test_import_rules(unit):
  """No import of `unit` goes up or sideways in the layer order (function-local ones too)."""
  edges = [e for e in _lab_edges() if e[2] == unit]
  assert not against_the_order(edges, lab_order(), known=KNOWN_AGAINST_THE_ORDER)


def test_side_by_side_units_stay_apart():
  """training imports nothing of analysis and analysis nothing of training (and likewise for
  the other pairs): in the declared order and in the code."""
  allowed = below(lab_order())
  for a, b in SIDE_BY_SIDE:
    assert b not in allowed[a] and a not in allowed[b], (a, b)
  crossing = [f'{path}:{line}: {module}' for path, line, source, module, target in _lab_edges()
              if {source, target} in [set(pair) for pair in SIDE_BY_SIDE]
              and (path, target) not in KNOWN_AGAINST_THE_ORDER]
  assert not crossing, crossing


def test_no_cycle_between_packages():
  assert cycles(_lab_edges(), known=KNOWN_AGAINST_THE_ORDER) == []


def test_known_imports_against_the_order_are_still_there():
  """An entry of KNOWN_AGAINST_THE_ORDER that no longer occurs must leave the list."""
  present = {(path, target) for path, _, _, _, target in _lab_edges()}
  assert KNOWN_AGAINST_THE_ORDER <= present, KNOWN_AGAINST_THE_ORDER - present


def test_command_line_modules_are_imported_by_no_lab_code():
  names = {path[:-3].replace('/', '.') for path in COMMAND_LINE_MODULES}
  importers = []
  for unit in sorted({u.split('.')[0] for u in SITS_ON}):
    for path in _files(ROOT, unit):
      for module, imported, _ in _imports(path):
        if names & ({module} | {f'{module}.{n}' for n in imported}):
          importers.append(os.path.relpath(path, ROOT))
  assert not importers, importers


def _write(root, files):
  for name, text in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_reports_upward_imports_and_cycles(tmp_path):
  """A synthetic tree: analysis and training side by side on runlib, each importing the other
  inside a function; a main() may import anything, and the script on top imports both."""
  _write(tmp_path, {
      'core/__init__.py': '',
      'runlib/__init__.py': 'import core\n',
      'analysis/__init__.py': '',
      'analysis/suite.py': ('from runlib import positions\n\n'
                            'def evaluate():\n  from training.loop import restore_run\n\n'
                            'def main(argv):\n  from train import cli\n'),
      'training/__init__.py': '',
      'training/hooks.py': ('from runlib import positions\n\n'
                            'def close():\n  from analysis import suite\n'),
      'train.py': ('import analysis.suite\nimport training.hooks\n\n'
                   'if __name__ == "__main__":\n  import studies\n'),
  })
  sits_on = {'core': (), 'runlib': ('core',), 'analysis': ('runlib',),
             'training': ('runlib',), 'train': ('training', 'analysis')}
  assert discover_units(tmp_path) == set(sits_on)
  edges = import_edges(tmp_path, set(sits_on))
  assert against_the_order(edges, sits_on) == [
      'analysis/suite.py:4: analysis imports training.loop (training is not below analysis)',
      'training/hooks.py:4: training imports analysis (analysis is not below training)']
  assert cycles(edges) == [['analysis', 'training']]
  # the same tree without the imports between the two: nothing to report
  _write(tmp_path, {'analysis/suite.py': 'from runlib import positions\n',
                    'training/hooks.py': 'from runlib import positions\n'})
  edges = import_edges(tmp_path, set(sits_on))
  assert against_the_order(edges, sits_on) == [] and cycles(edges) == []


def test_a_new_package_needs_a_place_and_a_new_script_sits_on_top(tmp_path):
  _write(tmp_path, {'extra/__init__.py': '', 'tool.py': 'import training\n'})
  order = lab_order(str(tmp_path))
  assert discover_units(str(tmp_path)) - set(order) == {'extra'}
  assert 'training' in below(order)['tool']


def test_checker_refuses_a_layer_order_with_a_cycle():
  with pytest.raises(ValueError, match='cycle: a -> b -> a'):
    below({'a': ('b',), 'b': ('a',)})


def test_no_private_helpers_imported_across_packages():
  broken = []
  packages = {u for u in discover_units(ROOT) if os.path.isdir(os.path.join(ROOT, u))}
  for package in sorted(packages):
    for path in _files(ROOT, package):
      for module, names, _ in _imports(path):
        top = module.split('.')[0]
        if top in packages and top != package:
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
