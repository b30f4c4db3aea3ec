"""The package's import graph: one way, no cycles, no hidden imports.

Imports flow main/CLIs -> train -> (models, losses, metrics, data).
Function-local imports of package modules would hide a cycle, so the lower
floors have none; the command-line modules (main, predict, order, convert,
reproduce) may defer imports to keep `--help` and flag errors fast and to
let `jax.distributed.initialize` run before the trainer is imported.
"""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'hypercut_jax')
CLI_MODULES = ('hypercut_jax.main', 'hypercut_jax.predict',
               'hypercut_jax.order', 'hypercut_jax.convert',
               'hypercut_jax.reproduce', 'hypercut_jax.inference')
# Who may import whom (by prefix); everything below train may not reach up.
LOWER = ('hypercut_jax.losses', 'hypercut_jax.metrics', 'hypercut_jax.models',
         'hypercut_jax.data')


def _modules() -> dict:
  out = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3]
        mod = rel.replace(os.sep, '.').removesuffix('.__init__')
        out[mod] = path
  return out


def _imports(path: str, modules) -> list[tuple[str, bool]]:
  """[(imported package module, inside a function)] of one file."""
  tree = ast.parse(open(path, encoding='utf-8').read())
  found = []

  def visit(node, in_function):
    for child in ast.iter_child_nodes(node):
      inner = in_function or isinstance(
          child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
      names = []
      if isinstance(child, ast.Import):
        names = [a.name for a in child.names]
      elif isinstance(child, ast.ImportFrom) and child.module:
        names = [f'{child.module}.{a.name}' for a in child.names]
        names = [n if n in modules else child.module for n in names]
      found.extend((n, in_function) for n in names if n in modules)
      visit(child, inner)

  visit(tree, False)
  return found


def _graph():
  modules = _modules()
  return modules, {m: _imports(p, modules) for m, p in modules.items()}


def _cycles(edges: dict) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on, out = {}, {}, [], set(), []

  def connect(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in edges[v]:
      if w not in index:
        connect(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in edges:
    if v not in index:
      connect(v)
  return out


def test_no_import_cycles_even_through_function_local_imports():
  modules, imports = _graph()
  # A package's own submodules are not a cycle with its __init__.
  edges = {m: {t for t, _ in found if t != m and not t.startswith(m + '.')}
           for m, found in imports.items()}
  assert _cycles(edges) == []
  assert 'hypercut_jax.train.loop' in modules


def test_lower_floors_import_nothing_above_them():
  _, imports = _graph()
  for mod, found in imports.items():
    if not mod.startswith(LOWER):
      continue
    above = sorted({t for t, _ in found if not t.startswith(LOWER)
                    and t != 'hypercut_jax'})
    assert not above, f'{mod} imports {above}'
  for mod in ('hypercut_jax.losses', 'hypercut_jax.metrics'):
    assert not [t for t, _ in imports[mod]], mod


def test_the_trainer_never_imports_the_command_line_modules():
  _, imports = _graph()
  for mod, found in imports.items():
    if mod.startswith('hypercut_jax.train'):
      bad = sorted({t for t, _ in found if t in CLI_MODULES})
      assert not bad, f'{mod} imports {bad}'


@pytest.mark.parametrize('floor', ['hypercut_jax.train', 'hypercut_jax.models',
                                   'hypercut_jax.data', 'hypercut_jax.losses',
                                   'hypercut_jax.metrics'])
def test_no_function_local_imports_of_the_package_below_the_clis(floor):
  _, imports = _graph()
  hidden = sorted((m, t) for m, found in imports.items()
                  if m.startswith(floor) for t, local in found if local)
  assert not hidden, hidden
