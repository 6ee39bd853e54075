"""The torch thread policy of the thread that feeds a backend (no ROS needed)."""

from types import SimpleNamespace

from affordance_grounding.inference.thread_policy import (
    apply_worker_thread_policy, uses_torch_cpu_threads)
import pytest
import torch


@pytest.fixture
def restore_threads():
    """Put torch's intra-op thread count back after the test."""
    saved = torch.get_num_threads()
    yield saved
    torch.set_num_threads(saved)


def test_only_pytorch_on_the_cpu_infers_on_torch_threads():
    assert uses_torch_cpu_threads('torch', 'cpu')
    for name, device in (('torch', 'cuda:0'), ('onnxruntime', 'cpu'), ('tensorrt', 'cuda:0')):
        assert not uses_torch_cpu_threads(name, device)


def test_other_backends_leave_torch_one_thread_for_preprocessing(restore_threads):
    torch.set_num_threads(2)
    backend = SimpleNamespace(name='onnxruntime', device='cpu')
    assert apply_worker_thread_policy(backend) == 1 == torch.get_num_threads()


def test_pytorch_on_the_cpu_keeps_the_threads_it_chose(restore_threads):
    torch.set_num_threads(2)
    backend = SimpleNamespace(name='torch', device='cpu')
    assert apply_worker_thread_policy(backend) == 2 == torch.get_num_threads()
