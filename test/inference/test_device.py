"""``device: auto`` and explicit devices resolve in one place (inference.selection)."""

import logging

from affordance_grounding.inference.io_spec import BackendUnavailableError
from affordance_grounding.inference.selection import (
    Environment, resolve_device, select_backend)
from affordance_grounding.ros.params import NodeConfig
import pytest
import torch

CPU_MACHINE = Environment(cuda_available=False, tensorrt_problem='tensorrt is not importable',
                          onnxruntime_problem=None,
                          onnxruntime_providers=('CPUExecutionProvider',))
LOGGER = 'affordance_grounding.inference.selection'


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize('device, cuda, expected', [
    ('auto', True, 'cuda'), ('cpu', False, 'cpu'), ('cpu', True, 'cpu'),
    ('cuda', True, 'cuda'), ('cuda:1', True, 'cuda:1')])
def test_resolve_device_without_warnings(device, cuda, expected, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert resolve_device(device, cuda_available=cuda) == expected
    assert warnings_of(caplog) == []


def test_auto_without_cuda_is_the_cpu_with_one_warning(caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert resolve_device('auto', cuda_available=False) == 'cpu'
    assert warnings_of(caplog) == [
        'device auto: no CUDA device (torch.cuda.is_available() is False), running on the CPU']


@pytest.mark.parametrize('device', ['cuda', 'cuda:0'])
def test_explicit_cuda_without_cuda_is_a_clear_error(device):
    with pytest.raises(BackendUnavailableError, match=f"device '{device}' requested but there "
                                                      'is no CUDA device.*use device auto or cpu'):
        resolve_device(device, cuda_available=False)


@pytest.mark.parametrize('device', ['gpu', 'cuda:x', '', 'CPU'])
def test_malformed_device_is_rejected(device):
    with pytest.raises(ValueError, match='expected auto, cpu, cuda or cuda:N'):
        resolve_device(device, cuda_available=True)


def test_resolve_device_asks_torch_by_default():
    assert resolve_device('auto') == ('cuda' if torch.cuda.is_available() else 'cpu')


def test_select_backend_auto_on_a_cpu_machine_warns_once(tiny_onnx, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        backend = select_backend('auto', str(tiny_onnx), 'auto', environment=CPU_MACHINE)
    assert (backend.name, backend.device) == ('onnxruntime', 'cpu')
    assert len(warnings_of(caplog)) == 1 and 'running on the CPU' in warnings_of(caplog)[0]


def test_select_backend_explicit_cuda_on_a_cpu_machine_is_one_clear_error(tiny_onnx):
    with pytest.raises(BackendUnavailableError) as info:
        select_backend('auto', str(tiny_onnx), 'cuda', environment=CPU_MACHINE)
    assert str(info.value) == ("device 'cuda' requested but there is no CUDA device "
                               '(torch.cuda.is_available() is False); use device auto or cpu')


def test_the_node_defaults_to_auto():
    assert NodeConfig().device == 'auto'
    NodeConfig().validate()
