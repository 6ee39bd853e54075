"""The PyTorch backend: a checkpoint bundle on the CPU (eager) or CUDA (autocast + graphs)."""

from dataclasses import dataclass
import logging
import threading
from typing import Dict, Optional, Tuple

from affordance_grounding.inference.backend_interface import (
    BackendOptions, check_image_batch, GroundingResult, ImageBatch, InferenceBackend)
from affordance_grounding.inference.graph import GroundingGraph
from affordance_grounding.inference.io_spec import (
    BackendUnavailableError, compute_file_sha256, ModelFileError, require_file)
from affordance_grounding.model.checkpoint import CheckpointError, load_grounder
import numpy as np
import torch

LOGGER = logging.getLogger(__name__)


@dataclass
class _CapturedGraph:
    """One CUDA graph with its static input and output buffers."""

    graph: 'torch.cuda.CUDAGraph'
    image: torch.Tensor  # (B, 3, S, S) float32, on the GPU
    outputs: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TorchBackend(InferenceBackend):
    """PyTorch from a checkpoint bundle: CPU eager, or CUDA with fp16 autocast + CUDA graphs.

    On CUDA the backbones run under fp16 autocast and everything after them in float32; one
    CUDA graph per batch size is captured on first use, with pre-allocated static buffers.
    """

    name = 'torch'

    def __init__(self, model_path: Optional[str], device: str = 'cpu',
                 options: Optional[BackendOptions] = None, grounder=None):
        """Create the backend from a bundle path, or from an in-memory ``grounder``.

        A given grounder is used as it is (not copied): :meth:`load` moves it to the device.
        """
        super().__init__(model_path, device, options)
        if model_path is None and grounder is None:
            raise ValueError('TorchBackend needs a bundle path or a grounder')
        self._grounder = grounder
        self._graph: Optional[GroundingGraph] = None
        self._precision = 'fp32'
        self._captured: Dict[int, _CapturedGraph] = {}
        self._lock = threading.Lock()

    @property
    def precision(self) -> str:
        """Backbone precision: ``fp16`` (autocast) or ``fp32``."""
        return self._precision

    def load(self) -> 'TorchBackend':
        """Load the bundle (or take the given grounder) onto the device."""
        device = torch.device(self._device)
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise BackendUnavailableError('PyTorch sees no CUDA device '
                                          '(torch.cuda.is_available() is False)')
        precision = self.options.precision
        if precision == 'auto':
            precision = 'fp16' if device.type == 'cuda' else 'fp32'
        if precision == 'fp16' and device.type != 'cuda':
            raise ValueError('fp16 autocast needs a CUDA device; use precision fp32 on the CPU')
        source_sha256 = ''
        grounder = self._grounder
        if grounder is None:
            require_file(str(self.model_path), 'checkpoint bundle',
                         'train one or convert a released checkpoint')
            try:
                grounder = load_grounder(str(self.model_path), 'cpu',
                                         self.options.expected_labels)
            except CheckpointError as error:  # the runtime reports one model-file error type
                raise ModelFileError(str(error)) from error
            source_sha256 = compute_file_sha256(str(self.model_path))
        graph = GroundingGraph(grounder, self.options.calibration or 'clip', 'fp32')
        if device.type == 'cpu' and self.options.intra_op_threads:
            torch.set_num_threads(self.options.intra_op_threads)
        self._graph = graph.to(device).eval()
        self._precision = precision
        self._captured = {}
        self._device = str(device) if device.type == 'cpu' else f'cuda:{_cuda_index(device)}'
        self._metadata = graph.metadata(source_sha256)
        self._metadata.check_labels(self.options.expected_labels, str(self.model_path))
        return self

    def close(self) -> None:
        """Drop the model, the CUDA graphs and their buffers."""
        super().close()
        self._graph = None
        self._captured = {}

    def _forward(self, image: torch.Tensor):
        """Backbones (fp16 autocast on CUDA when asked), then float32 head and calibration."""
        graph = self._graph
        fp16 = self._precision == 'fp16'
        with torch.autocast('cuda', dtype=torch.float16, enabled=fp16, cache_enabled=False):
            features = graph.compute_features(image)
        return graph.compute_outputs(features)

    @torch.inference_mode()
    def _run(self, images: ImageBatch) -> GroundingResult:
        """Eager on the CPU; replay of a captured graph on CUDA."""
        return self._execute(images, lambda outputs, _: GroundingResult(
            *self._to_host(outputs)))

    def _to_host(self, outputs) -> Tuple[np.ndarray, ...]:
        """Copy output tensors to host numpy arrays (pinned staging on CUDA when asked)."""
        if not (self._device.startswith('cuda') and self.options.pinned_outputs):
            return tuple(output.cpu().numpy() for output in outputs)
        hosts = [torch.empty(output.shape, dtype=output.dtype, pin_memory=True)
                 for output in outputs]
        for host, output in zip(hosts, outputs):
            host.copy_(output, non_blocking=True)  # on the stream that computed the outputs
        torch.cuda.current_stream(outputs[0].device).synchronize()
        return tuple(host.numpy() for host in hosts)

    @torch.inference_mode()
    def infer_on_device(self, images: ImageBatch
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run one batch and leave ``(affordance, cam, affinity)`` on the backend's device.

        For callers that keep working on the GPU or copy only part of the maps to the host
        (the all-class ``affordance`` of a batch of 64 is 460 MB). Same shapes and dtypes as
        :meth:`infer`; the tensors belong to the caller (copies of a CUDA graph's buffers).

        Raises:
            RuntimeError: If :meth:`load` was not called.
            ValueError: If the batch has the wrong shape or dtype.
        """
        check_image_batch(images, self.metadata.image_size)
        return self._execute(images, lambda outputs, static: tuple(
            output.clone() if static else output for output in outputs))

    def _execute(self, images: ImageBatch, finish):
        """Run a batch; ``finish(outputs, static)`` turns the output tensors into the result.

        ``static`` is True for a CUDA graph's shared buffers, which ``finish`` must copy: it
        runs under the lock, before the next replay can overwrite them.
        """
        batch = torch.as_tensor(images)
        use_graphs = self._device.startswith('cuda') and self.options.use_cuda_graphs
        if not use_graphs:
            return finish(self._forward(batch.to(self._device, non_blocking=True)), False)
        with self._lock:  # the static buffers are shared: one replay at a time
            captured = self._captured.get(batch.shape[0])
            if captured is None:
                captured = self._captured[batch.shape[0]] = self._capture(batch.shape[0])
            captured.image.copy_(batch, non_blocking=True)
            captured.graph.replay()
            return finish(captured.outputs, True)

    def _capture(self, batch_size: int) -> _CapturedGraph:
        """Warm up on a side stream, then capture the forward pass for one batch size."""
        size = self.metadata.image_size
        device = torch.device(self._device)
        image = torch.zeros(batch_size, 3, size, size, device=device)  # static input
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(3):  # cuBLAS/cuDNN handles and autotuning happen outside capture
                self._forward(image)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self._forward(image)
        LOGGER.info('captured a CUDA graph for batch %d on %s', batch_size, self._device)
        return _CapturedGraph(graph=graph, image=image, outputs=outputs)


def _cuda_index(device: torch.device) -> int:
    """Return the CUDA device index (the current device when none is given)."""
    return torch.cuda.current_device() if device.index is None else device.index
