"""What ``affordance_bag`` is asked to do (:class:`BagJob`) and what it did (the summary)."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from affordance_grounding.bag.reading import InputTopics
from affordance_grounding.perception.settings import OutputSettings
from affordance_grounding.vocabulary import DEFAULT_MIN_TEXT_MARGIN


@dataclass(frozen=True)
class BagJob:
    """What to run over which bag (the command line of ``affordance_bag``, parsed).

    Attributes:
        input_path: rosbag2 folder, or a single ``.mcap``/``.db3`` file.
        output_path: Output rosbag2 folder (must not exist unless ``overwrite``).
        model_path: Engine, ONNX graph or checkpoint bundle, as for the node.
        topics: Input topics (None image: the bag's only image topic).
        action: Action active before the first action message ('' = idle until one).
        backend: ``auto`` or a backend name (inference/selection.py).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: Frames per backend call; None: :func:`choose_batch_size`.
        storage: ``mcap`` or ``sqlite3``.
        output_prefix: Namespace of the output topics (the node's is ``/affordance``).
        copy_inputs: Input topics copied to the output: ``all``, ``used`` or ``none``.
        settings: Heatmap resolution, mask threshold, overlay style.
        sync_slop_s: Largest stamp difference between a colour frame and its depth.
        png_dir: Folder for the overlays as PNGs, or None.
        video_path: MP4 of the overlays, or None.
        video_fps: Frame rate of the MP4; None estimates it from the image topic.
        overwrite: Replace existing outputs.
        progress: Show a tqdm progress bar.
        overlap: Run inference in a worker thread while the next batch is read and decoded.
        action_min_text_margin: The node's parameter of that name, for action phrases mapped
            by the model's text fallback (``<model>.text.onnx``).
    """

    input_path: Path
    output_path: Path
    model_path: str
    topics: InputTopics = InputTopics(None)
    action: str = ''
    backend: str = 'auto'
    device: str = 'auto'
    batch_size: Optional[int] = None
    storage: str = 'mcap'
    output_prefix: str = '/affordance'
    copy_inputs: str = 'all'
    settings: OutputSettings = OutputSettings()
    sync_slop_s: float = 0.05
    png_dir: Optional[Path] = None
    video_path: Optional[Path] = None
    video_fps: Optional[float] = None
    overwrite: bool = False
    progress: bool = True
    overlap: bool = True
    action_min_text_margin: float = DEFAULT_MIN_TEXT_MARGIN


@dataclass
class BagSummary:
    """What a run did: frames in and out, skips and missing grasp points by reason."""

    frames_in: int = 0
    frames_out: int = 0
    skipped: Counter = field(default_factory=Counter)
    grasp_points: int = 0
    grasp_missing: Counter = field(default_factory=Counter)
    bad_inputs: Counter = field(default_factory=Counter)
    messages_written: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    backend: str = ''

    @property
    def frames_per_s(self) -> float:
        """Frames in per second of wall-clock time (reading to closing the output)."""
        return self.frames_in / self.seconds if self.seconds > 0 else 0.0

    def explain_nothing_written(self) -> str:
        """Say why no frame was written and what to pass, for a run with ``frames_out == 0``."""
        if self.frames_in == 0:
            return ('the image topic has no messages; check --image-topic against the bag '
                    '(ros2 bag info)')
        if self.skipped['no_action']:
            return (f'{self.skipped["no_action"]} of {self.frames_in} frames had no action: '
                    'pass one with --action (e.g. --action hold), or name the topic that '
                    'carries them with --action-topic')
        return f'all {self.frames_in} frames were skipped (reasons above)'

    def describe(self, output: Path, with_3d: bool) -> str:
        """Return a few lines for the terminal."""
        skipped = ', '.join(f'{reason} {n}' for reason, n in sorted(self.skipped.items()))
        lines = [f'frames in: {self.frames_in}, frames out: {self.frames_out}, skipped: '
                 f'{sum(self.skipped.values())}' + (f' ({skipped})' if skipped else '')]
        if with_3d:
            missing = ', '.join(f'{reason} {n}'
                                for reason, n in sorted(self.grasp_missing.items()))
            lines.append(f'grasp points: {self.grasp_points}'
                         + (f'; none for {missing}' if missing else ''))
        if self.bad_inputs:
            lines.append('unreadable messages (ignored): ' + ', '.join(
                f'{topic} {n}' for topic, n in sorted(self.bad_inputs.items())))
        lines.append(f'wrote {output} ({sum(self.messages_written.values())} messages) in '
                     f'{self.seconds:.1f} s, {self.frames_per_s:.1f} frames/s on {self.backend}')
        return '\n'.join(lines)
