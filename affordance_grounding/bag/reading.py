"""Open an input rosbag2 (sqlite3 or mcap) and check that the requested topics fit.

Every problem is a :class:`BagInputError` with one line that says what to do; a missing or
mistyped topic lists the topics the bag has, with their types.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

from affordance_grounding.bag.messages import (
    CAMERA_INFO, COMPRESSED_IMAGE, DETECTION_2D_ARRAY, IMAGE, load_typestore, STRING)
from rosbags.highlevel import AnyReader

DEFAULT_ACTION_TOPIC = '/affordance/action'


class BagInputError(ValueError):
    """The input bag or the topics asked for cannot be used (a user error, one line)."""


@dataclass(frozen=True)
class InputTopics:
    """The topics of the input bag the tool reads (None: not used).

    Attributes:
        image: Colour images, ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``.
        action: ``std_msgs/String`` action commands.
        depth: Colour-aligned depth ``sensor_msgs/Image`` (16UC1 mm or 32FC1 m).
        camera_info: ``sensor_msgs/CameraInfo`` of the colour camera.
        detections: A detector's ``vision_msgs/Detection2DArray`` (its type is read from the
            bag's own message definitions: vision_msgs need not be installed).
    """

    image: Optional[str]
    action: Optional[str] = None
    depth: Optional[str] = None
    camera_info: Optional[str] = None
    detections: Optional[str] = None


def open_bag(path: Path) -> AnyReader:
    """Open a rosbag2 directory or a single ``.mcap``/``.db3`` file for reading.

    Raises:
        BagInputError: If it does not exist, is a ROS 1 bag or cannot be read.
    """
    if not path.exists():
        raise BagInputError(f'input bag {path} does not exist')
    if path.suffix == '.bag':
        raise BagInputError(f'{path} is a ROS 1 bag; convert it first: '
                            f'rosbags-convert --src {path} --dst {path.with_suffix("")}')
    try:
        reader = AnyReader([path], default_typestore=load_typestore())
        reader.open()
    except Exception as error:  # noqa: B902 - storages, YAML and sqlite fail in their own ways
        reason = ' '.join(str(error).split())  # YAML errors span several lines
        raise BagInputError(f'cannot read {path} as a rosbag2 (sqlite3 or mcap): '
                            f'{reason or type(error).__name__}') from None
    return reader


def list_topics(reader: AnyReader) -> Dict[str, str]:
    """Topic name -> message type of every topic in the bag."""
    return {name: info.msgtype or '(mixed types)' for name, info in reader.topics.items()}


def describe_topics(topics: Dict[str, str]) -> str:
    """Format topics as ``/a (sensor_msgs/msg/Image), /b (...)`` or ``none``."""
    return ', '.join(f'{name} ({msgtype})' for name, msgtype in sorted(topics.items())) or 'none'


def resolve_topics(reader: AnyReader, requested: InputTopics) -> InputTopics:
    """Check the requested topics against the bag; fill in the image and action topics.

    Without ``image`` the bag's only image topic is used. Without ``action`` the node's
    default action topic is used when the bag has it.

    Raises:
        BagInputError: If a topic is missing, has the wrong type or is ambiguous.
    """
    topics = list_topics(reader)
    image = requested.image or _find_only_image_topic(topics, exclude=requested.depth)
    action = requested.action
    if action is None and topics.get(DEFAULT_ACTION_TOPIC) == STRING:
        action = DEFAULT_ACTION_TOPIC
    resolved = InputTopics(image, action, requested.depth, requested.camera_info,
                           requested.detections)
    expected = {'image': (IMAGE, COMPRESSED_IMAGE), 'action': (STRING,), 'depth': (IMAGE,),
                'camera_info': (CAMERA_INFO,), 'detections': (DETECTION_2D_ARRAY,)}
    for role, msgtypes in expected.items():
        name = getattr(resolved, role)
        if name is None:
            continue
        if name not in topics:
            raise BagInputError(f'the bag has no topic {name} (--{role.replace("_", "-")}-topic)'
                                f'; its topics: {describe_topics(topics)}')
        if topics[name] not in msgtypes:
            raise BagInputError(f'topic {name} is {topics[name]}, but --'
                                f'{role.replace("_", "-")}-topic needs {" or ".join(msgtypes)}')
    if (resolved.depth is None) != (resolved.camera_info is None):
        raise BagInputError('the grasp point needs both --depth-topic and --camera-info-topic')
    if resolved.detections is not None and DETECTION_2D_ARRAY not in reader.typestore.types:
        raise BagInputError(f'the bag does not store the message definition of '
                            f'{DETECTION_2D_ARRAY} (topic {resolved.detections}); record as mcap, '
                            'or as sqlite3 from ROS 2 Iron on: those store the definitions')
    return resolved


def _find_only_image_topic(topics: Dict[str, str], exclude: Optional[str]) -> str:
    images = sorted(name for name, msgtype in topics.items()
                    if msgtype in (IMAGE, COMPRESSED_IMAGE) and name != exclude)
    if len(images) != 1:
        found = describe_topics({name: topics[name] for name in images})
        raise BagInputError(f'give --image-topic; image topics in the bag: {found}')
    return images[0]


def read_messages(reader: AnyReader, path: Path) -> Iterator[Tuple[object, int, bytes]]:
    """All messages in receive-time order; a storage error mid-way is a :class:`BagInputError`.

    The storages fail in their own ways (sqlite corruption, bad mcap records), so every
    exception of the reader itself is caught here, and only here.
    """
    messages = reader.messages()
    read = 0
    while True:
        try:
            item = next(messages)
        except StopIteration:
            return
        except Exception as error:  # noqa: B902 - see the docstring
            raise BagInputError(f'{path} is damaged after {read} messages: {error!r}') from None
        read += 1
        yield item
