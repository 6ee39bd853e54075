"""The dependency rules of docs/architecture.md, checked on the import statements.

Layers of ``affordance_grounding`` (arrows point down only):

    ros, bag, predict          adapters: ROS topics, recorded bags, one photo
        -> perception          the per-frame job, no ROS
        -> inference, geometry model files and backends; 3D from depth
        -> model               the network
        -> config, vocabulary, fileio
"""

import ast
from pathlib import Path
import subprocess
import sys

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / 'affordance_grounding'
ROS_MODULES = {'rclpy', 'std_msgs', 'sensor_msgs', 'geometry_msgs', 'visualization_msgs',
               'diagnostic_msgs', 'lifecycle_msgs', 'std_srvs', 'cv_bridge',
               'message_filters', 'builtin_interfaces', 'rcl_interfaces'}


def imported_top_modules(path: Path):
    """Yield (line, top-level module) for every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split('.')[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module.split('.')[0]


CHECKOUT_ONLY = {'training', 'bench', 'demo', 'harness'}  # not installed by setup.py
BASE = {'config', 'vocabulary', 'fileio'}
# Rule number -> (layer, the layers of affordance_grounding it may import, what the rule says).
LAYER_RULES = {
    1: ('model', BASE, 'model imports nothing above it'),
    2: ('inference', BASE | {'model'}, 'inference stands on model only'),
    3: ('geometry', BASE, 'geometry is plain numpy: it stands on nothing of ours'),
    4: ('perception', BASE | {'inference', 'geometry'},
        'the frame job stands on inference and geometry, never on model or an adapter'),
    5: ('ros', BASE | {'perception', 'inference', 'geometry'},
        'ros is an adapter on the frame job: never model, never bag'),
    6: ('bag', BASE | {'perception', 'inference', 'geometry'},
        'bag is an adapter on the frame job: never model, never ros'),
    7: ('predict', BASE | {'perception', 'inference'},
        'predict is an adapter on the frame job: never model, ros or bag'),
    8: ('config', {'vocabulary'}, 'config needs only the vocabulary'),
    9: ('vocabulary', set(), 'vocabulary is the bottom'),
    10: ('fileio', set(), 'fileio is the bottom'),
    11: ('import_official', BASE | {'model'}, 'the checkpoint importer is a model tool'),
}
# The ROS-free side of the package, and the ROS adapter's modules that hold logic, not messages:
# each must import with every ROS package blocked (the worker's tests run in make test-fast).
ROS_FREE_MODULES = ('bag', 'perception', 'geometry', 'inference', 'model', 'predict',
                    'ros.frame_worker', 'ros.channels', 'ros.params', 'ros.health',
                    'ros.pairing', 'ros.transport')
BLOCK_ROS_AND_IMPORT = """
import importlib, importlib.abc, pkgutil, sys
class NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split('.')[0]
        if top in {ros!r} or top.endswith('_msgs') or top.startswith('rosidl'):
            raise ImportError('ROS is blocked (test)')
sys.meta_path.insert(0, NoRos())
for name in {modules!r}:
    module = importlib.import_module('affordance_grounding.' + name)
    for info in pkgutil.walk_packages(getattr(module, '__path__', []), module.__name__ + '.'):
        if info.name.split('.')[-1] != '__main__':
            importlib.import_module(info.name)
print(sorted(name for name in sys.modules if name.startswith('affordance_grounding.')))
"""


def internal_imports(path: Path):
    """Yield (line, layer) for every import of another layer of affordance_grounding."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module
                 and node.level == 0 else [])
        for name in names:
            parts = name.split('.')
            if parts[0] == 'affordance_grounding' and len(parts) > 1:
                yield node.lineno, parts[1]


def layer_of(path: Path) -> str:
    """Return the layer of a file of the package: its subpackage or its module name."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0][:-len('.py')] if len(parts) == 1 else parts[0]


def test_every_layer_imports_only_the_layers_below_it():
    offenders = []
    for number, (layer, allowed, rule) in LAYER_RULES.items():
        for path in PACKAGE.rglob('*.py'):
            if layer_of(path) != layer:
                continue
            offenders += [f'rule {number} ({rule}): {path.relative_to(REPO)}:{line} imports '
                          f'affordance_grounding.{target}'
                          for line, target in internal_imports(path)
                          if target != layer and target not in allowed]
    assert offenders == []


def test_every_layer_of_the_package_has_a_rule():
    layers = {layer_of(path) for path in PACKAGE.rglob('*.py')} - {'__init__'}
    assert layers == {layer for layer, _, _ in LAYER_RULES.values()}


def test_ros_free_modules_import_with_every_ros_package_blocked():
    code = BLOCK_ROS_AND_IMPORT.format(ros=sorted(ROS_MODULES), modules=ROS_FREE_MODULES)
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = result.stdout
    for name in ('bag.cli', 'bag.batching', 'perception.frame_processor', 'ros.frame_worker'):
        assert f"'affordance_grounding.{name}'" in imported


def test_layer_checker_sees_a_forbidden_import(tmp_path):
    sample = tmp_path / 'sample.py'
    sample.write_text('from affordance_grounding.model.checkpoint import x\n'
                      'import affordance_grounding.perception.stamps\nfrom . import y\n')
    assert list(internal_imports(sample)) == [(1, 'model'), (2, 'perception')]


def test_package_never_imports_training():
    offenders = [f'{path.relative_to(REPO)}:{line} imports {module}'
                 for path in PACKAGE.rglob('*.py')
                 for line, module in imported_top_modules(path) if module in CHECKOUT_ONLY]
    assert offenders == []


def test_only_ros_subpackage_imports_ros():
    ros_dir = PACKAGE / 'ros'
    offenders = [f'{path.relative_to(REPO)}:{line} imports {module}'
                 for path in PACKAGE.rglob('*.py') if ros_dir not in path.parents
                 for line, module in imported_top_modules(path) if module in ROS_MODULES]
    assert offenders == []


def test_boundary_checker_sees_imports(tmp_path):
    sample = tmp_path / 'sample.py'
    sample.write_text('import rclpy.node\nfrom training.loop import x\nfrom . import y\n')
    assert list(imported_top_modules(sample)) == [(1, 'rclpy'), (2, 'training')]


# --- No import cycles --------------------------------------------------------------------------
# A cycle is a module graph edge path that returns to its start. Every import statement counts,
# also one inside a function (a deferred import hides a cycle from the interpreter, not from the
# reader), and ``from package import name`` points at ``package.name`` when that is a module.
CYCLE_CHECKED = ('affordance_grounding', 'training', 'bench', 'demo', 'harness')


def list_modules(root: Path, packages) -> dict:
    """Map each dotted module name under ``packages`` (folders of ``root``) to its file."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob('*.py')):
            parts = path.relative_to(root).with_suffix('').parts
            modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return modules


def resolve_import_from(module: str, path: Path, node: ast.ImportFrom) -> str:
    """Return the absolute module an ``ImportFrom`` names (``from ..x import y`` -> ``a.x``)."""
    if not node.level:
        return node.module or ''
    package = module.split('.') if path.name == '__init__.py' else module.split('.')[:-1]
    base = package[:len(package) - (node.level - 1)]
    return '.'.join(base + ([node.module] if node.module else []))


def local_imports(module: str, path: Path, modules: dict) -> set:
    """Return the modules of ``modules`` that ``module`` (at ``path``) imports, anywhere in it."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve_import_from(module, path, node)
            names = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
                     for alias in node.names]
        else:
            continue
        targets |= {name for name in names if name in modules and name != module}
    return targets


def strongly_connected_groups(graph: dict) -> list:
    """Tarjan's algorithm: the groups of modules that import each other in a circle."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = set()
            while node not in group:
                group.add(stack.pop())
            on_stack.difference_update(group)
            groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [group for group in groups if len(group) > 1]


def shortest_cycle(graph: dict, group: set) -> list:
    """Return the shortest import path from the group's first module back to itself."""
    start = min(group)
    paths, frontier = {start: [start]}, [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & group):
                if successor == start:
                    return paths[node] + [start]
                if successor not in paths:
                    paths[successor] = paths[node] + [successor]
                    following.append(successor)
        frontier = following
    raise AssertionError(f'{sorted(group)} is not a cycle')


def find_import_cycles(root: Path, packages) -> list:
    """Name every import cycle among the modules of ``packages``: ``a -> b -> a`` lines."""
    modules = list_modules(root, packages)
    graph = {name: local_imports(name, path, modules) for name, path in modules.items()}
    return sorted(' -> '.join(shortest_cycle(graph, group))
                  for group in strongly_connected_groups(graph))


def test_no_import_cycles():
    cycles = find_import_cycles(REPO, CYCLE_CHECKED)
    assert cycles == [], 'import cycles (break each one):\n' + '\n'.join(cycles)


def test_cycle_finder_resolves_imports_and_names_the_cycle(tmp_path):
    files = {'pkg/__init__.py': 'from . import d\n',
             'pkg/a.py': 'from . import b\nimport os\n',
             'pkg/b.py': 'def f():\n    from pkg.c import value\n',
             'pkg/c.py': 'import pkg.a\nvalue = 1\n',
             'pkg/d.py': 'from pkg import a\n',
             'pkg/sub/__init__.py': 'from .e import thing\n',
             'pkg/sub/e.py': 'from ..d import name\nfrom .. import c\nthing = 1\n',
             'other/__init__.py': 'from pkg.sub import e\n'}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = list_modules(tmp_path, ('pkg', 'other'))
    assert local_imports('pkg.sub.e', modules['pkg.sub.e'], modules) == {'pkg.d', 'pkg.c'}
    assert local_imports('pkg.sub', modules['pkg.sub'], modules) == {'pkg.sub.e'}
    assert local_imports('other', modules['other'], modules) == {'pkg.sub.e'}
    assert local_imports('pkg', modules['pkg'], modules) == {'pkg.d'}
    assert find_import_cycles(tmp_path, ('pkg', 'other')) == ['pkg.a -> pkg.b -> pkg.c -> pkg.a']
    (tmp_path / 'pkg/b.py').write_text('x = 1\n')
    assert find_import_cycles(tmp_path, ('pkg', 'other')) == []
