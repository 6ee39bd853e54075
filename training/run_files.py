"""Write a run's result files (metrics JSON, contact-sheet PNG) atomically.

A training or evaluation run can be stopped at any moment (Ctrl-C, SIGTERM, a crash). Like the
model files, its JSON and images go through :func:`affordance_grounding.fileio.atomic_write`,
so a reader (a script, the ablation, a person) never finds half a file under the real name.
"""

import json
from pathlib import Path
from typing import Any, Union

from affordance_grounding.fileio import atomic_write, write_bytes_atomically
import cv2
import numpy as np


def write_json(path: Union[str, Path], payload: Any, indent: int = 2) -> Path:
    """Serialise ``payload`` first, then write it atomically (a failure writes nothing)."""
    text = json.dumps(payload, indent=indent) + '\n'
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def write_png(path: Union[str, Path], image: np.ndarray) -> Path:
    """Encode a BGR image as PNG in memory, then write it atomically.

    ``cv2.imwrite`` picks the format from the file name, which the temporary file of
    ``atomic_write`` does not end in, so the image is encoded first.
    """
    encoded, data = cv2.imencode('.png', image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not encoded:
        raise ValueError(f'cannot encode a {image.dtype} {image.shape} image as PNG for {path}')
    return write_bytes_atomically(path, data.tobytes())
