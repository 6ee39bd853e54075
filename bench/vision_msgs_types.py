"""vision_msgs 4.x (ROS 2 Humble, Jazzy) definitions, for recording detector bags in tests.

rosbags ships no vision_msgs and the project must not need it installed: a test bag stores
these definitions, as ``ros2 bag record`` does, and ``affordance_bag`` reads the types back
from the bag. Only the messages a Detection2DArray uses, written from the interface as
vision_msgs documents it (field names, types and order; comments left out).
"""

from affordance_grounding.bag import messages
from rosbags.typesys import get_types_from_msg
from rosbags.typesys.store import Typestore

DETECTION_2D_ARRAY = messages.DETECTION_2D_ARRAY
DEFINITIONS = {
    'vision_msgs/msg/Point2D': 'float64 x\nfloat64 y\n',
    'vision_msgs/msg/Pose2D': 'vision_msgs/Point2D position\nfloat64 theta\n',
    'vision_msgs/msg/BoundingBox2D': 'vision_msgs/Pose2D center\nfloat64 size_x\n'
                                     'float64 size_y\n',
    'vision_msgs/msg/ObjectHypothesis': 'string class_id\nfloat64 score\n',
    'vision_msgs/msg/ObjectHypothesisWithPose': 'vision_msgs/ObjectHypothesis hypothesis\n'
                                                'geometry_msgs/PoseWithCovariance pose\n',
    'vision_msgs/msg/Detection2D': 'std_msgs/Header header\n'
                                   'vision_msgs/ObjectHypothesisWithPose[] results\n'
                                   'vision_msgs/BoundingBox2D bbox\nstring id\n',
    DETECTION_2D_ARRAY: 'std_msgs/Header header\nvision_msgs/Detection2D[] detections\n',
}


def register_vision_msgs(typestore: Typestore) -> Typestore:
    """Add the vision_msgs types above to ``typestore`` (Jazzy's has none); returns it."""
    types = {}
    for name, text in DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
    return typestore


def detection_array(typestore: Typestore, header, boxes) -> object:
    """Build a Detection2DArray of ``boxes``: (x, y, w, h, class_id, score), top-left corners.

    Each detection gets the array's header, the id ``det<i>`` and one hypothesis.
    """
    detections = []
    for index, (x, y, width, height, class_id, score) in enumerate(boxes):
        detection = messages.build_default_message(typestore, 'vision_msgs/msg/Detection2D')
        detection.header, detection.id = header, f'det{index}'
        detection.bbox.center.position.x = x + width / 2.0
        detection.bbox.center.position.y = y + height / 2.0
        detection.bbox.size_x, detection.bbox.size_y = float(width), float(height)
        result = messages.build_default_message(typestore,
                                                'vision_msgs/msg/ObjectHypothesisWithPose')
        result.hypothesis.class_id, result.hypothesis.score = class_id, float(score)
        detection.results = [result]
        detections.append(detection)
    return typestore.types[DETECTION_2D_ARRAY](header=header, detections=detections)
