"""Run the model over a recorded bag, offline: the engine of ``affordance_bag``.

One pass over the bag in receive-time order: input messages are copied, colour frames get
their action and depth (bag/frames.py), are decoded and grouped into batches of up to
``batch_size`` frames (mixed actions are fine: the model computes every label's map at once),
and each batch goes through the node's frame job (perception/frame_processor.py). Results
carry their input's header and receive time. A frame that cannot be used is counted by
reason and skipped; it is never fatal.
"""

from dataclasses import replace
import time
from typing import Callable, Dict, Optional, Tuple

from affordance_grounding.bag import messages
from affordance_grounding.bag.batching import (
    ActionParser, FrameBatcher, ResultWriter, start_inference_thread)
from affordance_grounding.bag.frames import FrameAssembler
from affordance_grounding.bag.job import BagJob, BagSummary
from affordance_grounding.bag.media import OverlayMedia
from affordance_grounding.bag.output import OutputBag
from affordance_grounding.bag.reading import (
    BagInputError, InputTopics, open_bag, read_messages, resolve_topics)
from affordance_grounding.inference.backends import InferenceBackend
from affordance_grounding.inference.text_encoder import open_text_fallback
from affordance_grounding.perception.frame_processor import FrameProcessor
from affordance_grounding.perception.settings import (
    DEFAULT_MAX_BATCH, load_backend, ModelSettings)
from affordance_grounding.vocabulary import parse_action_command
import numpy as np
from rosbags.rosbag2 import WriterError
from rosbags.typesys import TypesysError
from tqdm import tqdm

OUTPUT_TOPICS = {'heatmap': messages.IMAGE, 'grasp_mask': messages.IMAGE,
                 'overlay': messages.IMAGE, 'grasp_point': messages.POINT_STAMPED,
                 'grasp_pose': messages.POSE_STAMPED, 'affordance_cloud': messages.POINT_CLOUD2,
                 'markers': messages.MARKER_ARRAY}
OUTPUTS_3D = ('grasp_point', 'grasp_pose', 'affordance_cloud', 'markers')
COPY_CHOICES = ('all', 'used', 'none')


GPU_BATCH_SIZE = DEFAULT_MAX_BATCH


def choose_batch_size(requested: Optional[int], backend: InferenceBackend) -> int:
    """Return ``requested``, else 8 frames per call on a GPU and 1 on the CPU.

    On the CPU the backends are compute-bound: a batch costs as much per frame as single
    frames, and only delays the results (docs/benchmarks.md, *Recorded bags*).
    """
    if requested is not None:
        return requested
    return 1 if backend.device == 'cpu' else GPU_BATCH_SIZE


def load_job_backend(job: BagJob) -> InferenceBackend:
    """Select and load the backend for the job (errors name the fix, see selection.py)."""
    return load_backend(model_settings(job))


def model_settings(job: BagJob) -> ModelSettings:
    """Return what loading the job's model needs.

    No spinning between runs: decoding and postprocessing need the cores then (as the node).
    """
    return ModelSettings(model_path=job.model_path, backend=job.backend, device=job.device,
                         max_batch=job.batch_size or GPU_BATCH_SIZE, cpu_spin_wait=False)


def run_bag(job: BagJob, backend: Optional[InferenceBackend] = None,
            log: Callable[[str], None] = tqdm.write) -> BagSummary:
    """Process a bag end to end; the output appears under its name only when complete.

    Args:
        job: What to do.
        backend: An already loaded backend (tests, benchmarks); else :func:`load_job_backend`.
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
        backend = backend or load_job_backend(job)
        processor = FrameProcessor(backend)
        job = replace(job, batch_size=choose_batch_size(job.batch_size, backend))
        actions = open_action_parser(job, processor.labels, log)
        summary = BagSummary(backend=backend.describe())
        _process(reader, topics, processor, job, summary, log, actions)
    finally:
        reader.close()
    summary.seconds = time.perf_counter() - start
    return summary


def open_action_parser(job: BagJob, labels: Tuple[str, ...], log) -> ActionParser:
    """Build the node's action parser for this model (text fallback included); check --action.

    Raises:
        BagInputError: If ``--action`` maps to no label (the parser's reason).
    """
    fallback = open_text_fallback(str(job.model_path), labels)
    if fallback.failed:
        log(fallback.note)
    if job.action:
        try:
            parse_action_command(job.action, labels, fallback.matcher, job.action_min_text_margin)
        except ValueError as error:
            raise BagInputError(str(error)) from None
    return ActionParser(labels, log, fallback.matcher, job.action_min_text_margin)


def _process(reader, topics: InputTopics, processor: FrameProcessor, job: BagJob,
             summary: BagSummary, log, actions: ActionParser) -> None:
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
            start_inference_thread(processor.backend) as executor:
        passthrough = add_passthrough_connections(out, copied, log)
        connections = {name: out.add_result(topic, OUTPUT_TOPICS[name])
                       for name, topic in result_topics.items()
                       if topics.depth or name not in OUTPUTS_3D}
        batcher = FrameBatcher(processor, job, ResultWriter(out, connections, media, typestore),
                               summary, log, executor, actions)
        assembler = FrameAssembler(job.action, int(job.sync_slop_s * 1e9), parse=actions)
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
