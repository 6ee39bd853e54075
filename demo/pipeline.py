"""Build (or reuse) the demo model: synthetic data set, brief training, ONNX export.

Every step is skipped when its output exists and was made from the same inputs (a key file
beside each output records what they were), so a second ``make demo`` starts at the node.
"""

import hashlib
import json
from pathlib import Path
from typing import List, Sequence

from affordance_grounding.config import load_model_config
from training import export, synthetic, synthetic_catalogue, synthetic_render, train

SYNTHETIC_MODEL = Path('config/model_synthetic.yaml')
TINY_MODEL = Path('config/model_tiny.yaml')
TRAIN_CONFIG = Path('training/configs/synthetic_pretrained.yaml')


def weight_files(model_config: Path) -> List[Path]:
    """Return the local backbone weight files a model config names (none for random ones)."""
    config = load_model_config(str(model_config))
    names = (config.clip_weights, config.dino_weights)
    return [Path(name) for name in names if name not in (None, 'openai', 'pretrained')]


def choose_model_config() -> Path:
    """Return the small pretrained backbones' config when their weights exist, else tiny."""
    if SYNTHETIC_MODEL.is_file() and all(path.is_file()
                                         for path in weight_files(SYNTHETIC_MODEL)):
        return SYNTHETIC_MODEL
    return TINY_MODEL


def compute_key(files: Sequence[Path], settings: dict) -> str:
    """Return a SHA-256 over file contents and settings: the identity of a step's inputs."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def is_current(output: Path, key: str) -> bool:
    """Return True when ``output`` exists and was made from inputs with this key."""
    key_file = output.with_name(output.name + '.key')
    return output.exists() and key_file.is_file() and key_file.read_text() == key


def mark_current(output: Path, key: str) -> None:
    """Record the key of the inputs ``output`` was made from."""
    output.with_name(output.name + '.key').write_text(key)


def build_model(out_dir: Path, epochs: int, seed: int = 0) -> dict:
    """Run data -> train -> export as needed; return the paths and what was reused."""
    model_config = choose_model_config()
    weights = weight_files(model_config)
    data_root, train_dir = out_dir / 'data', out_dir / 'train'
    onnx_path = out_dir / 'model.onnx'
    reused = []
    generator = [Path(module.__file__)
                 for module in (synthetic, synthetic_catalogue, synthetic_render)]
    data_key = compute_key(generator, {'seed': seed})
    if is_current(data_root / 'Seen', data_key):
        reused.append('data')
    else:
        synthetic.main(['--out', str(data_root), '--seed', str(seed), '--settings', 'Seen',
                        '--overwrite'])
        mark_current(data_root / 'Seen', data_key)
    overrides = [f'data_root={data_root}', f'model_config={model_config}',
                 f'out_dir={train_dir}', f'epochs={epochs}', f'seed={seed}']
    train_key = compute_key([model_config, TRAIN_CONFIG, *weights],
                            {'overrides': overrides, 'data': data_key})
    bundle = train_dir / 'best.pt'
    if is_current(bundle, train_key):
        reused.append('training')
    else:
        if train_dir.exists():
            for stale in train_dir.iterdir():
                stale.unlink()
        code = train.main(['--config', str(TRAIN_CONFIG), *overrides])
        if code:  # Ctrl-C (last.pt saved) or a set-up error, already reported in one line
            raise SystemExit(code)
        mark_current(bundle, train_key)
    export_key = compute_key([bundle], {})
    if is_current(onnx_path, export_key):
        reused.append('export')
    else:
        export.main(['--checkpoint', str(bundle), '--out', str(onnx_path)])
        mark_current(onnx_path, export_key)
    return {'model_config': str(model_config), 'data_root': str(data_root),
            'bundle': str(bundle), 'onnx': str(onnx_path), 'reused': reused}
