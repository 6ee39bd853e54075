"""Write small synthetic rosbag2 recordings (rosbags writer, Jazzy types) for tests and bench.bag.

Frames are synthetic test scenes (training/synthetic.py), cropped to 128x96 so that the
model's square resize is exercised; depth is a 1.0-1.5 m plane aligned with colour.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from affordance_grounding.bag import messages
from affordance_grounding.bag.output import STORAGES
from affordance_grounding.perception.stamps import stamp_to_ns
from bench.vision_msgs_types import DETECTION_2D_ARRAY, detection_array, register_vision_msgs
import cv2
import numpy as np
from rosbags.rosbag2 import Writer
from training.synthetic import ItemSpec, render_item, SyntheticConfig

IMAGE_TOPIC = '/camera/color/image_raw'
COMPRESSED_TOPIC = '/camera/color/image_raw/compressed'
DEPTH_TOPIC = '/camera/aligned_depth_to_color/image_raw'
INFO_TOPIC = '/camera/color/camera_info'
ACTION_TOPIC = '/affordance/action'
DETECTIONS_TOPIC = '/detector/detections'
DETECTION_DELAY_NS = 40_000_000  # a detector publishes after the image it ran on
FRAME_PERIOD_NS = 100_000_000  # 10 Hz
START_NS = 1_700_000_000 * 1_000_000_000
SCENES = (('hold', 'cup'), ('hold', 'knife'), ('cut_with', 'knife'), ('cut_with', 'scissors'),
          ('drink_with', 'cup'), ('pour', 'bottle'), ('open', 'bottle'), ('sit_on', 'chair'))


def render_scene_rgb(index: int, width: int = 128, height: int = 96) -> np.ndarray:
    """(height, width, 3) uint8 RGB synthetic scene number ``index`` (centre crop)."""
    affordance, object_name = SCENES[index % len(SCENES)]
    side = max(width, height)
    item = render_item(SyntheticConfig(image_size=side),
                       ItemSpec('testset', 'egocentric', affordance, object_name,
                                index // len(SCENES)))
    top, left = (side - height) // 2, (side - width) // 2
    return cv2.cvtColor(item.image_bgr[top:top + height, left:left + width], cv2.COLOR_BGR2RGB)


def depth_plane_mm(height: int, width: int) -> np.ndarray:
    """(H, W) uint16 millimetres: 1.0 m on the top row to 1.5 m on the bottom row."""
    rows_m = np.linspace(1.0, 1.5, height, dtype=np.float32)[:, None]  # (H, 1)
    return np.repeat(rows_m * 1000.0, width, axis=1).astype(np.uint16)


@dataclass
class RecordingSpec:
    """What to record.

    Attributes:
        frames: Number of colour frames.
        actions: (frame index, text): the command is recorded just before that frame.
        compression: '' for raw rgb8 images, else '.png' or '.jpg' CompressedImage.
        with_depth: Record depth (same stamp as colour, received 30 ms later) and CameraInfo.
        bad_frames: Frame indices recorded with a too-short data array (a bad image).
        garbled_frames: Frame indices whose serialized message is cut to 12 bytes.
        garbled_depth: Frame indices whose depth message is cut to 12 bytes.
        storage: ``mcap`` or ``sqlite3``.
        size: (width, height) of the frames.
        detections: Frame index -> boxes (x, y, w, h, class_id, score) of a
            vision_msgs/Detection2DArray with the frame's stamp, received 40 ms later (its
            definition stored in the bag); None: no detections topic. Frames not listed get
            no detection message.
        detection_stamp_shift_ns: Frame index -> nanoseconds added to that frame's
            detections' stamp (to make them miss the pairing).
    """

    frames: int = 6
    actions: tuple = ((0, 'hold'),)
    compression: str = ''
    with_depth: bool = False
    bad_frames: tuple = ()
    garbled_frames: tuple = ()
    garbled_depth: tuple = ()
    storage: str = 'mcap'
    size: tuple = (128, 96)
    detections: Optional[Dict[int, list]] = None
    detection_stamp_shift_ns: Optional[Dict[int, int]] = None


def header(typestore, index: int):
    """Header of frame ``index``: camera frame, stamp 10 ms before its receive time."""
    msg = messages.build_default_message(typestore, 'std_msgs/msg/Header')
    stamp_ns = START_NS + index * FRAME_PERIOD_NS - 10_000_000
    msg.stamp.sec, msg.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.frame_id = 'camera_color_optical_frame'
    return msg


def write_recording(path: Path, spec: RecordingSpec) -> List[np.ndarray]:
    """Write the bag; return the RGB frames in order."""
    typestore = messages.load_typestore()
    if spec.detections is not None:
        register_vision_msgs(typestore)
    rgbs = [render_scene_rgb(index, *spec.size) for index in range(spec.frames)]
    with Writer(path, version=Writer.VERSION_LATEST,
                storage_plugin=STORAGES[spec.storage]) as writer:
        image_type = messages.COMPRESSED_IMAGE if spec.compression else messages.IMAGE
        image_conn = writer.add_connection(COMPRESSED_TOPIC if spec.compression else IMAGE_TOPIC,
                                           image_type, typestore=typestore)
        action_conn = writer.add_connection(ACTION_TOPIC, messages.STRING, typestore=typestore)
        if spec.with_depth:
            depth_conn = writer.add_connection(DEPTH_TOPIC, messages.IMAGE, typestore=typestore)
            info_conn = writer.add_connection(INFO_TOPIC, messages.CAMERA_INFO,
                                              typestore=typestore)
        if spec.detections is not None:
            detections_conn = writer.add_connection(DETECTIONS_TOPIC, DETECTION_2D_ARRAY,
                                                    typestore=typestore)
        actions = dict(spec.actions)
        for index, rgb in enumerate(rgbs):
            time_ns = START_NS + index * FRAME_PERIOD_NS
            if index in actions:
                msg = typestore.types[messages.STRING](data=actions[index])
                writer.write(action_conn, time_ns - 1_000_000,
                             typestore.serialize_cdr(msg, messages.STRING))
            msg = build_image(typestore, rgb, index, spec)
            data = typestore.serialize_cdr(msg, image_type)
            writer.write(image_conn, time_ns, data[:12] if index in spec.garbled_frames else data)
            if spec.with_depth:
                depth = messages.to_image_msg(typestore, depth_plane_mm(*rgb.shape[:2]),
                                              '16UC1', header(typestore, index))
                data = typestore.serialize_cdr(depth, messages.IMAGE)
                writer.write(depth_conn, time_ns + 30_000_000,
                             data[:12] if index in spec.garbled_depth else data)
                writer.write(info_conn, time_ns + 1_000,
                             typestore.serialize_cdr(camera_info(typestore, rgb, index),
                                                     messages.CAMERA_INFO))
            if spec.detections is not None and index in spec.detections:
                writer.write(detections_conn, time_ns + DETECTION_DELAY_NS,
                             serialized_detections(typestore, index, spec))
    return rgbs


def serialized_detections(typestore, index: int, spec: RecordingSpec) -> bytes:
    """CDR of frame ``index``'s Detection2DArray (stamp shifted where the spec says)."""
    stamp = header(typestore, index)
    shift_ns = (spec.detection_stamp_shift_ns or {}).get(index, 0)
    stamp_ns = stamp_to_ns(stamp.stamp) + shift_ns
    stamp.stamp.sec, stamp.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg = detection_array(typestore, stamp, spec.detections[index])
    return typestore.serialize_cdr(msg, DETECTION_2D_ARRAY)


def build_image(typestore, rgb: np.ndarray, index: int, spec: RecordingSpec):
    """Raw rgb8 ``Image`` or ``CompressedImage`` of one frame (truncated if a bad frame)."""
    if spec.compression:
        ok, encoded = cv2.imencode(spec.compression, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        data = encoded.reshape(-1)[:10] if index in spec.bad_frames else encoded.reshape(-1)
        return typestore.types[messages.COMPRESSED_IMAGE](
            header=header(typestore, index), format=spec.compression[1:].replace('jpg', 'jpeg'),
            data=data)
    msg = messages.to_image_msg(typestore, rgb, 'rgb8', header(typestore, index))
    if index in spec.bad_frames:
        msg.data = msg.data[:100]
    return msg


def camera_info(typestore, rgb: np.ndarray, index: int):
    """Pinhole intrinsics with fx = fy = width and the principal point at the centre."""
    height, width = rgb.shape[:2]
    info = messages.build_default_message(typestore, messages.CAMERA_INFO)
    info.header, info.height, info.width = header(typestore, index), height, width
    info.k = np.array([width, 0.0, width / 2.0, 0.0, width, height / 2.0, 0.0, 0.0, 1.0])
    return info


def read_topic(path: Path, topic: str) -> list:
    """(receive time, message) of every message on ``topic`` of a bag."""
    from rosbags.highlevel import AnyReader

    with AnyReader([path], default_typestore=messages.load_typestore()) as reader:
        connections = [conn for conn in reader.connections if conn.topic == topic]
        return [(time_ns, reader.deserialize(raw, conn.msgtype))
                for conn, time_ns, raw in reader.messages(connections)]


def first_stamp_ns(msg) -> Optional[int]:
    """Stamp of a message header in nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
