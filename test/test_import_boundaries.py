"""The dependency rules of docs/architecture.md, checked on the import statements."""

import ast
from pathlib import Path

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
