"""How many torch threads the thread that feeds a backend should use; no ROS needed.

A node's inference thread preprocesses with torch and then calls the backend. When the
backend is PyTorch on the CPU, torch's threads do the inference and keep the count the
backend chose at load. Otherwise torch only preprocesses there, and one thread is faster (its
uint8 resize kernel is vectorised) and leaves the cores to the backend and the ROS executor.
"""

import torch


def uses_torch_cpu_threads(backend_name: str, device: str) -> bool:
    """Return True when the backend's inference runs on torch's CPU thread pool."""
    return backend_name == 'torch' and device == 'cpu'


def apply_worker_thread_policy(backend) -> int:
    """Set torch's intra-op threads for the thread that feeds ``backend``; returns the count.

    Args:
        backend: A loaded :class:`~affordance_grounding.inference.backends.InferenceBackend`.
    """
    if not uses_torch_cpu_threads(backend.name, backend.device):
        torch.set_num_threads(1)
    return torch.get_num_threads()
