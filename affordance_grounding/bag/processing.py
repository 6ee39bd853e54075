"""Run the model over a recorded bag, offline and batched: the engine of ``affordance_bag``.

One pass over the bag in receive-time order: input messages are copied, colour frames get
their action and depth (bag/frames.py), are decoded and grouped into batches of up to
``batch_size`` frames (mixed actions are fine: the model computes every label's map at once),
and each batch goes through the node's frame pipeline (runtime/frame_pipeline.py). Results
carry their input's header and receive time. A frame that cannot be used is counted by
reason and skipped; it is never fatal.
"""

from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple

from affordance_grounding.bag import messages
from affordance_grounding.bag.frames import Frame, FrameAssembler
from affordance_grounding.bag.media import OverlayMedia
from affordance_grounding.bag.output import OutputBag
from affordance_grounding.bag.reading import (
    BagInputError, InputTopics, open_bag, read_messages, resolve_topics)
from affordance_grounding.ros.conversions import (
    colour_msg_to_rgb, image_msg_to_array, ImageConversionError)
from affordance_grounding.runtime.backends import BackendOptions, InferenceBackend
from affordance_grounding.runtime.frame_pipeline import FrameOutputs, FramePipeline, OutputSettings
from affordance_grounding.runtime.grasp3d import compute_3d_outputs, Grasp3DOutputs
from affordance_grounding.runtime.selection import select_backend
from affordance_grounding.vocabulary import parse_action_command
import numpy as np
from rosbags.rosbag2 import WriterError
from rosbags.typesys import TypesysError
import torch
from tqdm import tqdm

OUTPUT_TOPICS = {'heatmap': messages.IMAGE, 'grasp_mask': messages.IMAGE,
                 'overlay': messages.IMAGE, 'grasp_point': messages.POINT_STAMPED,
                 'grasp_pose': messages.POSE_STAMPED, 'affordance_cloud': messages.POINT_CLOUD2,
                 'markers': messages.MARKER_ARRAY}
OUTPUTS_3D = ('grasp_point', 'grasp_pose', 'affordance_cloud', 'markers')
COPY_CHOICES = ('all', 'used', 'none')


@dataclass(frozen=True)
class BagJob:
    """What to run over which bag (the command line of ``affordance_bag``, parsed).

    Attributes:
        input_path: rosbag2 folder, or a single ``.mcap``/``.db3`` file.
        output_path: Output rosbag2 folder (must not exist unless ``overwrite``).
        model_path: Engine, ONNX graph or checkpoint bundle, as for the node.
        topics: Input topics (None image: the bag's only image topic).
        action: Action active before the first action message ('' = idle until one).
        backend: ``auto`` or a backend name (runtime/selection.py).
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


GPU_BATCH_SIZE = 8


def choose_batch_size(requested: Optional[int], backend: InferenceBackend) -> int:
    """Return ``requested``, else 8 frames per call on a GPU and 1 on the CPU.

    On the CPU the backends are compute-bound: a batch costs as much per frame as single
    frames, and only delays the results (docs/benchmarks.md, *Recorded bags*).
    """
    if requested is not None:
        return requested
    return 1 if backend.device == 'cpu' else GPU_BATCH_SIZE


def load_backend(job: BagJob) -> InferenceBackend:
    """Select and load the backend for the job (errors name the fix, see selection.py)."""
    # No spinning between runs: decoding and postprocessing need the cores then (as the node).
    options = BackendOptions(max_batch=job.batch_size or GPU_BATCH_SIZE, cpu_spin_wait=False)
    return select_backend(job.backend, job.model_path, job.device, options)


def run_bag(job: BagJob, backend: Optional[InferenceBackend] = None,
            log: Callable[[str], None] = tqdm.write) -> BagSummary:
    """Process a bag end to end; the output appears under its name only when complete.

    Args:
        job: What to do.
        backend: An already loaded backend (tests, benchmarks); else :func:`load_backend`.
        log: Where warnings go (one line each).

    Raises:
        BagInputError: Unreadable bag, missing topic, unknown ``--action``.
        BagOutputError: The output exists or cannot be created.
        ModelFileError, BackendUnavailableError: The model cannot be loaded here.
    """
    if job.batch_size is not None and job.batch_size < 1:
        raise BagInputError(f'--batch must be at least 1, got {job.batch_size}')
    if job.copy_inputs not in COPY_CHOICES:
        raise BagInputError(f'--inputs must be one of {COPY_CHOICES}, got {job.copy_inputs!r}')
    start = time.perf_counter()
    reader = open_bag(job.input_path)
    try:
        topics = resolve_topics(reader, job.topics)
        backend = backend or load_backend(job)
        pipeline = FramePipeline(backend)
        job = replace(job, batch_size=choose_batch_size(job.batch_size, backend))
        if job.action:
            parse_or_raise(job.action, pipeline.labels)
        summary = BagSummary(backend=backend.describe())
        _process(reader, topics, pipeline, job, summary, log)
    finally:
        reader.close()
    summary.seconds = time.perf_counter() - start
    return summary


def parse_or_raise(text: str, labels: Tuple[str, ...]) -> Tuple[str, int]:
    """:func:`parse_action_command` with a user-error exception."""
    try:
        return parse_action_command(text, labels).key
    except ValueError as error:
        raise BagInputError(str(error)) from None


def _process(reader, topics: InputTopics, pipeline: FramePipeline, job: BagJob,
             summary: BagSummary, log) -> None:
    typestore = messages.load_typestore()
    used = {topics.image, topics.action, topics.depth, topics.camera_info} - {None}
    copied = [conn for conn in reader.connections
              if job.copy_inputs == 'all' or (job.copy_inputs == 'used' and conn.topic in used)]
    prefix = job.output_prefix.rstrip('/')
    result_topics = {name: f'{prefix}/{name}' for name in OUTPUT_TOPICS}
    clashes = sorted({conn.topic for conn in copied} & set(result_topics.values()))
    if clashes:
        raise BagInputError(f'the input bag already has {", ".join(clashes)} (an earlier '
                            'output?); choose another --output-prefix or --inputs used')
    image_count = reader.topics[topics.image].msgcount
    fps = job.video_fps or estimate_rate_hz(image_count, reader.duration)
    with OutputBag(job.output_path, job.storage, typestore, job.overwrite) as out, \
            OverlayMedia(job.png_dir, job.video_path, fps, job.overwrite) as media, \
            start_inference_thread(pipeline.backend) as executor:
        passthrough = add_passthrough_connections(out, copied, log)
        connections = {name: out.add_result(topic, OUTPUT_TOPICS[name])
                       for name, topic in result_topics.items()
                       if topics.depth or name not in OUTPUTS_3D}
        batcher = FrameBatcher(pipeline, job, ResultWriter(out, connections, media, typestore),
                               summary, log, executor)
        assembler = FrameAssembler(job.action, int(job.sync_slop_s * 1e9))
        roles = {topics.image: 'image', topics.action: 'action', topics.depth: 'depth',
                 topics.camera_info: 'camera_info'}
        with tqdm(total=image_count, unit='frame', disable=not job.progress,
                  dynamic_ncols=True) as bar:
            batcher.on_done = bar.update
            for conn, time_ns, raw in read_messages(reader, job.input_path):
                if id(conn) in passthrough:
                    out.write(passthrough[id(conn)], time_ns, raw)
                role = roles.get(conn.topic)
                if role is not None:
                    _dispatch(reader, conn, time_ns, raw, role, assembler, summary, bar)
                batcher.add(assembler.release(time_ns))
                pending = [t for t in (assembler.oldest_pending_ns, batcher.oldest_pending_ns)
                           if t is not None]
                out.flush(min(pending + [time_ns]))
            batcher.add(assembler.release())
            batcher.finish()
        summary.messages_written = dict(out.counts)
        out.commit()
        media.commit()


def start_inference_thread(backend: InferenceBackend) -> ThreadPoolExecutor:
    """One worker thread for the frame pipeline, set up like the node's (ros/frame_worker.py).

    Unless PyTorch itself runs the model on the CPU, torch only preprocesses: one torch thread
    is faster there and leaves the cores to the backend (idle OpenMP threads spinning after
    a resize slow ONNX Runtime down; docs/benchmarks.md, *Recorded bags*).
    """
    torch_on_cpu = backend.name == 'torch' and backend.device == 'cpu'
    return ThreadPoolExecutor(1, thread_name_prefix='affordance_bag_inference',
                              initializer=None if torch_on_cpu else torch.set_num_threads,
                              initargs=() if torch_on_cpu else (1,))


def add_passthrough_connections(out: OutputBag, connections, log) -> Dict[int, object]:
    """Output connections for the copied inputs, by ``id()`` of the input connection.

    A topic whose type the bag does not define and Jazzy does not know is left out, said once.
    """
    copied = {}
    for conn in connections:
        try:
            copied[id(conn)] = out.add_passthrough(conn)
        except (TypesysError, WriterError) as error:
            log(f'not copying {conn.topic} ({conn.msgtype}): {error}')
    return copied


def _dispatch(reader, conn, time_ns: int, raw: bytes, role: str, assembler: FrameAssembler,
              summary: BagSummary, bar) -> None:
    """Deserialize one input message and hand it to the assembler (bad ones are counted)."""
    if role == 'image':
        summary.frames_in += 1
    try:
        msg = reader.deserialize(raw, conn.msgtype)
    except Exception:  # noqa: B902 - any malformed record: count it, keep going
        if role == 'image':
            summary.skipped['bad_message'] += 1
            bar.update(1)
        else:
            summary.bad_inputs[conn.topic] += 1
        return
    if role == 'image':
        assembler.add_image(time_ns, msg)
    elif role == 'action':
        assembler.add_action(str(msg.data))
    elif role == 'depth':
        assembler.add_depth(time_ns, msg)
    else:
        assembler.add_camera_info(msg)


def estimate_rate_hz(count: int, duration_ns: int, default_hz: float = 30.0) -> float:
    """Frames per second of a topic with ``count`` messages over the bag's duration."""
    if count < 2 or duration_ns <= 0:
        return default_hz
    return float(np.clip((count - 1) / (duration_ns * 1e-9), 1.0, 120.0))


class ResultWriter:
    """Serializes one frame's results into the output bag and the overlay media."""

    def __init__(self, out: OutputBag, connections: Dict[str, object], media: OverlayMedia,
                 typestore):
        """Write to ``connections`` (output name -> bag connection) of ``out``."""
        self.out, self.connections, self.media, self.typestore = out, connections, media, typestore

    def write_images(self, frame: Frame, outputs: FrameOutputs) -> None:
        """Heatmap (32FC1), grasp mask (mono8) and overlay (bgr8) with the input's header."""
        header = frame.msg.header
        for name, array_, encoding in (('heatmap', outputs.heatmap, '32FC1'),
                                       ('grasp_mask', outputs.mask, 'mono8'),
                                       ('overlay', outputs.overlay, 'bgr8')):
            self._write(name, frame, messages.to_image_msg(self.typestore, array_, encoding,
                                                           header), messages.IMAGE)
        self.media.add(frame.index, outputs.overlay)

    def write_3d(self, frame: Frame, result: Grasp3DOutputs, label: str) -> None:
        """Grasp point, pose, region cloud and markers, as the node publishes them."""
        header, typestore = frame.msg.header, self.typestore
        if len(result.cloud.points):
            self._write('affordance_cloud', frame,
                        messages.to_point_cloud(typestore, header, result.cloud.xyzi),
                        messages.POINT_CLOUD2)
        if result.pose.pose is not None:
            self._write('grasp_pose', frame,
                        messages.to_pose_stamped(typestore, header, result.pose.pose),
                        messages.POSE_STAMPED)
        xyz_m = result.point.xyz_m
        if xyz_m is None:
            return  # the node publishes markers only with a point
        self._write('grasp_point', frame, messages.to_point_stamped(typestore, header, xyz_m),
                    messages.POINT_STAMPED)
        markers = messages.to_grasp_markers(typestore, header, xyz_m, label)
        markers.markers += messages.to_grasp_pose_markers(typestore, header, result.pose.pose)
        self._write('markers', frame, markers, messages.MARKER_ARRAY)

    def _write(self, name: str, frame: Frame, msg, msgtype: str) -> None:
        data = self.typestore.serialize_cdr(msg, msgtype)
        self.out.write(self.connections[name], frame.time_ns, data)


class FrameBatcher:
    """Decodes released frames, runs them in batches and writes their results."""

    def __init__(self, pipeline: FramePipeline, job: BagJob, writer: ResultWriter,
                 summary: BagSummary, log, executor: ThreadPoolExecutor):
        """Batch up to ``job.batch_size`` frames per backend call, run on ``executor``.

        With ``job.overlap`` a batch runs while this thread reads, decodes and writes (the
        backend call, OpenCV and numpy release the GIL); one batch is in flight at most, so
        memory stays bounded and results are written in order.
        """
        self.pipeline, self.job, self.writer = pipeline, job, writer
        self.summary, self.log = summary, log
        self.on_done: Callable[[int], object] = lambda n: None
        self._executor = executor
        self._batch: List[Tuple[Frame, np.ndarray, str, int]] = []
        self._inflight: Deque[Tuple[list, Future]] = deque()
        self._actions: Dict[str, Tuple[str, int]] = {}

    @property
    def oldest_pending_ns(self) -> Optional[int]:
        """Receive time of the oldest frame whose results are not written yet."""
        oldest = self._inflight[0][0] if self._inflight else self._batch
        return oldest[0][0].time_ns if oldest else None

    def add(self, frames: List[Frame]) -> None:
        """Prepare frames; run a batch whenever one is full."""
        for frame in frames:
            prepared = self._prepare(frame)
            if prepared is None:
                self.on_done(1)
                continue
            self._batch.append(prepared)
            if len(self._batch) >= self.job.batch_size:
                self._submit()

    def finish(self) -> None:
        """Run the frames still waiting and write every result."""
        self._submit()
        while self._inflight:
            self._write_oldest()

    def _submit(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        _, rgbs, labels, indices = zip(*batch)
        self._inflight.append((batch, self._executor.submit(
            self.pipeline.run_batch, rgbs, indices, self.job.settings, labels)))
        while len(self._inflight) > (1 if self.job.overlap else 0):
            self._write_oldest()

    def _write_oldest(self) -> None:
        batch, future = self._inflight.popleft()
        results = future.result()  # re-raises the batch's exception here
        frames, rgbs, labels, _ = zip(*batch)
        for frame, rgb, label, outputs in zip(frames, rgbs, labels, results):
            self.writer.write_images(frame, outputs)
            self.summary.frames_out += 1
            if 'grasp_point' in self.writer.connections:
                self._write_3d(frame, rgb.shape[:2], outputs, label)
        self.on_done(len(batch))

    def _prepare(self, frame: Frame) -> Optional[Tuple[Frame, np.ndarray, str, int]]:
        label, index = self._parse_action(frame.action)
        if index < 0:
            self.summary.skipped['no_action' if not label else 'unknown_action'] += 1
            return None
        try:
            rgb = colour_msg_to_rgb(frame.msg)
        except ImageConversionError as error:
            if not self.summary.skipped['bad_image']:
                self.log(f'skipping frame {frame.index}: {error} (further bad images are only '
                         'counted)')
            self.summary.skipped['bad_image'] += 1
            return None
        return frame, rgb, label, index

    def _parse_action(self, text: str) -> Tuple[str, int]:
        """(label, index); (text, -1) for an unknown action, warned about once."""
        if text not in self._actions:
            try:
                self._actions[text] = parse_action_command(text, self.pipeline.labels).key
            except ValueError as error:
                self.log(f'action command {text!r} ignored: {error}')
                self._actions[text] = (text or '?', -1)
        return self._actions[text]

    def _write_3d(self, frame: Frame, image_hw, outputs: FrameOutputs, label: str) -> None:
        """Run the node's 3D chain (runtime/grasp3d.py) on the frame's paired depth."""
        if frame.camera_info is None:
            self.summary.grasp_missing['no_camera_info'] += 1
            return
        if frame.depth is None:
            self.summary.grasp_missing['no_depth'] += 1
            return
        try:
            depth, encoding = image_msg_to_array(frame.depth)
            result = compute_3d_outputs(depth, encoding, outputs.mask, outputs.heatmap,
                                        image_hw, list(frame.camera_info.k))
        except ValueError:  # ImageConversionError is a ValueError too
            self.summary.grasp_missing['bad_depth'] += 1
            return
        if result.point.xyz_m is None:
            self.summary.grasp_missing['no_grasp_point'] += 1
        else:
            self.summary.grasp_points += 1
        self.writer.write_3d(frame, result, label)
