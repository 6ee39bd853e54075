"""Overlays as numbered PNGs and/or an MP4 (OpenCV), written under temporary names.

Both appear under their final names only when the run completes, like the output bag.
"""

from pathlib import Path
from typing import Optional

from affordance_grounding.bag.output import check_free, move_into_place, partial_path, remove_path
import cv2
import numpy as np


class OverlayMedia:
    """Receives overlays in frame order; use as a context manager, then :meth:`commit`."""

    def __init__(self, png_dir: Optional[Path], video_path: Optional[Path], fps: float,
                 overwrite: bool = False):
        """Check the destinations (nothing is written before the first overlay)."""
        for path in (png_dir, video_path):
            if path is not None:
                check_free(path, overwrite)
        self.png_dir, self.video_path, self.fps = png_dir, video_path, fps
        self._video: Optional[cv2.VideoWriter] = None
        self._video_size = None
        self._staging = {path: partial_path(path) for path in (png_dir, video_path) if path}
        if video_path is not None:  # OpenCV picks the container from the extension: keep it
            self._staging[video_path] = video_path.with_name(
                f'.{video_path.stem}.partial{video_path.suffix}')
        self.written = 0

    def __enter__(self) -> 'OverlayMedia':
        """Create the staging PNG folder."""
        for staged in self._staging.values():
            remove_path(staged)  # left over from a killed run
        if self.png_dir is not None:
            self._staging[self.png_dir].mkdir()
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        """Discard partial files unless :meth:`commit` ran."""
        self._release()
        for staged in self._staging.values():
            remove_path(staged)
        return False

    def add(self, index: int, overlay_bgr: np.ndarray) -> None:
        """Store one (H, W, 3) uint8 BGR overlay; ``index`` numbers the PNG."""
        if self.png_dir is not None:
            cv2.imwrite(str(self._staging[self.png_dir] / f'{index:06d}.png'), overlay_bgr)
        if self.video_path is not None:
            self._add_video_frame(overlay_bgr)
        self.written += 1

    def commit(self) -> None:
        """Finish the video and move both outputs to their final names."""
        self._release()
        for final, staged in self._staging.items():
            if staged.exists():
                move_into_place(staged, final)

    def _add_video_frame(self, overlay_bgr: np.ndarray) -> None:
        if self._video is None:
            height, width = overlay_bgr.shape[:2]
            self._video_size = (width, height)
            staged = self._staging[self.video_path]
            self._video = cv2.VideoWriter(str(staged), cv2.VideoWriter_fourcc(*'mp4v'),
                                          self.fps, self._video_size)
            if not self._video.isOpened():
                raise OSError(f'OpenCV cannot write the video {self.video_path} (mp4v codec)')
        if overlay_bgr.shape[1::-1] != self._video_size:  # the camera changed resolution
            overlay_bgr = cv2.resize(overlay_bgr, self._video_size, interpolation=cv2.INTER_AREA)
        self._video.write(overlay_bgr)

    def _release(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
