"""Resumable training state: written atomically, loaded with ``weights_only=True``.

``last.pt`` holds everything needed to continue exactly (trainable weights, optimiser,
position in the epoch, RNG states); the best model is written separately as an inference
bundle (``affordance_grounding.model.checkpoint``) so it can be used directly.
"""

from pathlib import Path
import random
from typing import Any, Dict, Optional

from affordance_grounding.model.checkpoint import (
    CheckpointError, load_checkpoint_file, write_atomically)
import numpy as np
import torch

STATE_FORMAT = 'affordance_grounding.train_state/1'


def capture_rng_state() -> Dict[str, Any]:
    """Return Python, NumPy and torch RNG states as weights_only-loadable values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        'python': random.getstate(),
        'numpy': {'kind': kind, 'keys': torch.from_numpy(keys.astype(np.int64)),
                  'position': int(position), 'has_gauss': int(has_gauss),
                  'cached': float(cached)},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    python_state = state['python']
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    numpy_state = state['numpy']
    np.random.set_state((numpy_state['kind'], numpy_state['keys'].numpy().astype(np.uint32),
                         numpy_state['position'], numpy_state['has_gauss'],
                         numpy_state['cached']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def save_train_state(path: Path, *, trainable: Dict[str, Dict[str, torch.Tensor]],
                     optimizer: torch.optim.Optimizer, progress: Dict[str, Any],
                     config: Dict[str, Any]) -> Path:
    """Write the resumable state atomically.

    Args:
        path: Destination (``last.pt``).
        trainable: State dicts of the trainable modules, keyed by module name.
        optimizer: The optimiser (momentum buffers included).
        progress: Plain values: epoch, step_in_epoch, global_step, best score ...
        config: The TrainConfig as a dict (checked on resume).
    """
    payload = {'format': STATE_FORMAT, 'trainable': trainable,
               'optimizer': optimizer.state_dict(), 'progress': dict(progress),
               'config': dict(config), 'rng': capture_rng_state()}
    return write_atomically(payload, Path(path))


def load_train_state(path: Path) -> Optional[Dict[str, Any]]:
    """Load ``last.pt`` if it exists (None otherwise).

    Raises:
        CheckpointError: If the file exists but is not a readable training state.
    """
    if not Path(path).exists():
        return None
    state = load_checkpoint_file(str(path))
    if state.get('format') != STATE_FORMAT:
        raise CheckpointError(f'{path}: not a training state (format {state.get("format")!r})')
    return state
