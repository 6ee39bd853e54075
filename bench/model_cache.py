"""The benchmarked model: built with random weights, exported once per precision and cached.

The grounder is assembled by ``model.factory`` (the same code a bundle goes through); the ONNX
files are written by ``training.graph_export`` and, for int8, ``training.quantize``, so every
export the benchmarks time has passed the exporter's own parity checks.
"""

from dataclasses import dataclass
import hashlib
from pathlib import Path
import time
from typing import Optional, Sequence, Tuple

from affordance_grounding.config import ModelConfig
from affordance_grounding.inference.graph import GroundingGraph
from affordance_grounding.model.backbones import build_clip_tokenizer, load_clip_model
from affordance_grounding.model.factory import assemble_grounder, build_prompt_tables
from affordance_grounding.model.grounding import AffordanceGrounder
import torch

DEFAULT_CACHE = 'outputs/bench/cache'
# Training images of the synthetic world (python -m training.synthetic): the int8 calibration
# and parity images when present.
DEFAULT_CALIBRATION_DATA = 'data/synthetic_abl/Seen/trainset'


@dataclass(frozen=True)
class Int8Settings:
    """How the benchmark's int8 graph is made (training.quantize).

    Attributes:
        method: ``dynamic`` or ``static``.
        calibration_data: Folder of training images; None: seeded random parity images
            (``dynamic`` only).
        min_cosine: Parity gate; None uses the exporter's default.
    """

    method: str = 'dynamic'
    calibration_data: Optional[str] = None
    min_cosine: Optional[float] = None


def build_model(config: Optional[ModelConfig] = None, seed: int = 0):
    """Return (grounder, full CLIP model, tokenizer) with random weights.

    Args:
        config: Architecture; None is the full-size SelectiveCL model with random backbones.
        seed: Seed of the random weights.
    """
    torch.manual_seed(seed)
    config = config or ModelConfig(clip_weights=None, dino_weights=None)
    clip_model = load_clip_model(config)
    item_text = build_prompt_tables(clip_model, config)['item']
    grounder = assemble_grounder(config, clip_model, item_text)
    return grounder, clip_model, build_clip_tokenizer(config)


def build_full_size(seed: int = 0):
    """Full-size SelectiveCL architecture with random weights, plus the full CLIP model."""
    return build_model(None, seed)


def weight_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over every state-dict entry (name, dtype, shape, bytes), first 16 hex digits."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{value.dtype}:{tuple(value.shape)}'.encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def ensure_onnx(grounder: AffordanceGrounder, cache_dir: str, seed: int,
                precision: str = 'fp32', int8: Int8Settings = Int8Settings()
                ) -> Tuple[Path, float]:
    """Export ``grounder`` once per (seed, weights, precision); returns (path, export seconds).

    fp32/fp16 come from ``training.graph_export`` (checked against PyTorch), int8 from the cached
    fp32 file through ``training.quantize`` (gated on per-map cosine). A cached file is reused
    when its name matches; 0 seconds then.
    """
    from training.graph_export import export_onnx, ExportOptions

    stem = f'grounder_seed{seed}_{weight_fingerprint(grounder)}'
    name = f'{stem}_{precision}' + (f'_{int8.method}' if precision == 'int8' else '')
    path = Path(cache_dir) / f'{name}.onnx'
    if path.is_file():
        return path, 0.0
    started = time.perf_counter()
    if precision == 'int8':
        fp32_path, _ = ensure_onnx(grounder, cache_dir, seed, 'fp32')
        started = time.perf_counter()
        print(f'quantizing {fp32_path} -> {path} ({int8.method}) ...', flush=True)
        quantize_cached(fp32_path, path, int8, seed)
        return path, time.perf_counter() - started
    print(f'exporting {path} (about a minute at full size) ...', flush=True)
    export_onnx(grounder, str(path), ExportOptions(precision=precision))
    return path, time.perf_counter() - started


def quantize_cached(fp32_path: Path, path: Path, int8: Int8Settings, seed: int) -> None:
    """Write the int8 graph with the exporter's quantizer and gate."""
    from training.quantize import list_image_files, quantize_onnx, QuantizeOptions

    images: Sequence[str] = ()
    if int8.calibration_data:
        images = tuple(str(file) for file in list_image_files(int8.calibration_data))
    gate = {} if int8.min_cosine is None else {'min_cosine': int8.min_cosine}
    options = QuantizeOptions(method=int8.method, calibration_images=tuple(images), seed=seed,
                              **gate)
    quantize_onnx(str(fp32_path), str(path), options)


def count_flops_per_frame(grounder: AffordanceGrounder) -> float:
    """Count the FLOPs of one frame through the inference graph (FlopCounterMode).

    The fused multi-head-attention fast path of open_clip's blocks is turned off while
    counting: FlopCounterMode does not see inside it.
    """
    from torch.utils.flop_counter import FlopCounterMode

    graph = GroundingGraph(grounder).eval()
    size = grounder.config.image_size
    device = next(grounder.parameters()).device
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            graph(torch.zeros(1, 3, size, size, device=device))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return float(counter.get_total_flops())
