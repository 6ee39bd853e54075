"""Shared fixtures, DDS isolation for every ROS test, and the ``ros`` marker without ROS.

The tiny random architecture of config/model_tiny.yaml is built once per session.
"""

import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')  # hub look-ups fail fast instead of retrying
# Every test session gets its own DDS domain (and localhost-only discovery), so parallel
# sessions on one machine never see each other's nodes. Set here, before any test module is
# imported, so it holds for every ROS test (test/ros/, test_demo.py ...), however selected;
# node processes inherit it.
os.environ['ROS_DOMAIN_ID'] = str(20 + os.getpid() % 200)  # valid ids are 0..232
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'

from pathlib import Path  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from affordance_grounding.config import load_model_config  # noqa: E402
from affordance_grounding.model.factory import build_grounder  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG_PATH = REPO / 'config' / 'model_tiny.yaml'
TINY_SEED = 1234
ROS_MARK = 'pytest.mark.ros'


def _ros_is_installed() -> bool:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return False
    return True


ROS_INSTALLED = _ros_is_installed()
_NOT_COLLECTED = []


def pytest_ignore_collect(collection_path, config):
    """Without rclpy, do not import test modules marked ``ros``: they import ROS at load.

    So ``-m "not ros"`` (``make test-fast``) runs on a machine without ROS; the header of the
    run says how many modules were left out.
    """
    if ROS_INSTALLED or collection_path.suffix != '.py' or collection_path.name == 'conftest.py':
        return None
    if ROS_MARK in collection_path.read_text(errors='replace'):
        _NOT_COLLECTED.append(collection_path.name)
        return True
    return None


def pytest_report_collectionfinish(config, start_path, items):
    """Name the ROS test modules that were not collected because rclpy is missing."""
    if _NOT_COLLECTED:
        return (f'rclpy is not installed: {len(_NOT_COLLECTED)} ros-marked test modules not '
                f'collected ({", ".join(sorted(_NOT_COLLECTED))})')
    return None


@pytest.fixture(scope='session')
def tiny_config_path():
    """Return the path of the tiny test architecture."""
    return TINY_CONFIG_PATH


@pytest.fixture(scope='session')
def tiny_config():
    """Return the tiny model configuration."""
    return load_model_config(str(TINY_CONFIG_PATH))


@pytest.fixture(scope='session')
def tiny_grounder(tiny_config):
    """Return a seeded tiny grounder in eval mode; tests must not modify it."""
    torch.manual_seed(TINY_SEED)
    return build_grounder(tiny_config).eval()


@pytest.fixture(scope='session')
def tiny_images():
    """Return three fixed (3, 3, 224, 224) ImageNet-normalised-like random images."""
    generator = torch.Generator().manual_seed(7)
    return torch.randn(3, 3, 224, 224, generator=generator)


@pytest.fixture(scope='session')
def tiny_bundle(tiny_grounder, tmp_path_factory):
    """Return the path of a bundle holding the tiny grounder (random backbones embedded)."""
    from affordance_grounding.model.checkpoint import save_bundle

    return save_bundle(str(tmp_path_factory.mktemp('bundle') / 'tiny.pt'), tiny_grounder)


@pytest.fixture(scope='session')
def tiny_onnx(tiny_grounder, tmp_path_factory):
    """Return the path of the tiny grounder exported to ONNX (calibration clip, fp32)."""
    from training.export import export_onnx

    path = tmp_path_factory.mktemp('onnx') / 'tiny.onnx'
    export_onnx(tiny_grounder, str(path))
    return path


PACKAGE_FILES = ('package.xml', 'setup.py', 'setup.cfg', 'resource', 'affordance_grounding',
                 'launch', 'config', 'rviz')


@pytest.fixture(scope='session')
def colcon_install(tmp_path_factory):
    """Build a copy of the package in a throw-away workspace; return the install prefix."""
    colcon = Path(sys.executable).with_name('colcon')
    if not colcon.exists():
        pytest.skip('colcon is not installed (make setup installs it)')
    workspace = tmp_path_factory.mktemp('ws')
    source = workspace / 'src' / 'affordance_grounding'
    source.mkdir(parents=True)
    for name in PACKAGE_FILES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name,
                            ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copy2(origin, source / name)
    env = dict(os.environ, PATH=f'{colcon.parent}{os.pathsep}{os.environ.get("PATH", "")}')
    result = subprocess.run([str(colcon), 'build', '--base-paths', 'src'], cwd=workspace,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return workspace / 'install' / 'affordance_grounding'


@pytest.fixture(scope='session')
def synthetic_onnx(tmp_path_factory):
    """Return an ONNX graph with the small synthetic-pretrained backbones (seeded head).

    The node tests run this model so that what they exercise is the model the demo ships:
    backbones whose CLIP affinity means something (config/model_synthetic.yaml).
    """
    from training.export import export_onnx

    torch.manual_seed(TINY_SEED)
    grounder = build_grounder(load_model_config(str(REPO / 'config' / 'model_synthetic.yaml')))
    path = tmp_path_factory.mktemp('synthetic_onnx') / 'synthetic.onnx'
    export_onnx(grounder.eval(), str(path))
    return path
