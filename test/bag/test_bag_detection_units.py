"""Pieces of the bag tool's detections path: pairing, types from the bag, the ranked message."""

from test.bag.test_bag_units import MS, stamped
from types import SimpleNamespace

from affordance_grounding.bag import messages
from affordance_grounding.bag.detections import (
    field_type, register_missing_types, to_affordance_detections)
from affordance_grounding.bag.frames import FrameAssembler
from affordance_grounding.bag.reading import BagInputError, InputTopics, resolve_topics
from bench.vision_msgs_types import DETECTION_2D_ARRAY, detection_array, register_vision_msgs
import pytest
from rosbags.typesys import get_types_from_msg

# vision_msgs 3.x (Foxy): a flat hypothesis (id, score) and geometry_msgs/Pose2D centres.
VISION_MSGS_3 = {
    'vision_msgs/msg/ObjectHypothesisWithPose': 'string id\nfloat64 score\n'
                                                'geometry_msgs/PoseWithCovariance pose\n',
    'vision_msgs/msg/BoundingBox2D': 'geometry_msgs/Pose2D center\nfloat64 size_x\n'
                                     'float64 size_y\n',
    'vision_msgs/msg/Detection2D': 'std_msgs/Header header\n'
                                   'vision_msgs/ObjectHypothesisWithPose[] results\n'
                                   'vision_msgs/BoundingBox2D bbox\n'
                                   'sensor_msgs/Image source_img\nbool is_tracking\n'
                                   'string tracking_id\n',
    DETECTION_2D_ARRAY: 'std_msgs/Header header\nvision_msgs/Detection2D[] detections\n',
}


def test_assembler_pairs_detections_like_depth_received_after_the_frame():
    assembler = FrameAssembler('hold', slop_ns=20 * MS, lookahead_ns=500 * MS)
    assembler.add_image(1000 * MS, stamped(990 * MS, 'first'))
    assembler.add_image(1100 * MS, stamped(1090 * MS, 'second'))
    assembler.add_paired('detections', 1040 * MS, stamped(990 * MS, 'boxes of first'))
    assembler.add_paired('detections', 1150 * MS, stamped(1050 * MS, 'too early for second'))
    assembler.add_depth(1050 * MS, stamped(1090 * MS, 'depth of second'))
    first, second = assembler.release()
    assert (first.detections.name, first.depth) == ('boxes of first', None)
    assert (second.detections, second.depth.name) == (None, 'depth of second')


def test_missing_types_come_from_the_bag_and_jazzy_keeps_its_own():
    bag_types = register_vision_msgs(messages.load_typestore())
    target = messages.load_typestore()
    header_before = target.fielddefs['std_msgs/msg/Header']
    added = register_missing_types(target, bag_types)
    assert DETECTION_2D_ARRAY in added and 'std_msgs/msg/Header' not in added
    assert target.fielddefs['std_msgs/msg/Header'] == header_before
    assert register_missing_types(target, bag_types) == []  # once is enough
    assert field_type(target, DETECTION_2D_ARRAY, 'detections') == 'vision_msgs/msg/Detection2D'
    assert field_type(target, 'vision_msgs/msg/Detection2D', 'bbox') == \
        'vision_msgs/msg/BoundingBox2D'


def test_ranked_message_keeps_header_boxes_ids_and_gets_one_hypothesis_each():
    typestore = register_vision_msgs(messages.load_typestore())
    header = messages.copy_header(typestore, SimpleNamespace(
        stamp=SimpleNamespace(sec=0, nanosec=5 * MS), frame_id='camera'))
    source = detection_array(typestore, header, [(0, 0, 10, 10, 'cup', 0.9),
                                                 (20, 20, 5, 5, 'knife', 0.1),
                                                 (40, 40, 8, 8, 'bad', 0.5)])
    image_header = SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=7), frame_id='optical')
    msg = to_affordance_detections(typestore, DETECTION_2D_ARRAY, source,
                                   [(1, 0.8), (0, 0.3)], 'cut_with', image_header)
    data = typestore.serialize_cdr(msg, DETECTION_2D_ARRAY)
    back = typestore.deserialize_cdr(data, DETECTION_2D_ARRAY)
    assert (back.header.frame_id, back.header.stamp.sec, back.header.stamp.nanosec) == \
        ('optical', 3, 7)  # the image's header, as on every output
    assert [d.header.frame_id for d in back.detections] == ['camera', 'camera']  # their own
    assert [d.id for d in back.detections] == ['det1', 'det0']
    assert [d.bbox.size_x for d in back.detections] == [5.0, 10.0]
    assert [[(r.hypothesis.class_id, r.hypothesis.score) for r in d.results]
            for d in back.detections] == [[('cut_with', 0.8)], [('cut_with', 0.3)]]
    assert [r.hypothesis.class_id for d in source.detections for r in d.results] == \
        ['cup', 'knife', 'bad']  # the input is not changed


def test_ranked_message_in_the_vision_msgs_3_layout():
    typestore = messages.load_typestore()
    types = {}
    for name, text in VISION_MSGS_3.items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
    detection = messages.build_default_message(typestore, 'vision_msgs/msg/Detection2D')
    detection.tracking_id = 'track7'
    source = messages.build_default_message(typestore, DETECTION_2D_ARRAY)
    source.detections = [detection]
    msg = to_affordance_detections(typestore, DETECTION_2D_ARRAY, source, [(0, 0.6)], 'hold',
                                   source.header)
    back = typestore.deserialize_cdr(typestore.serialize_cdr(msg, DETECTION_2D_ARRAY),
                                     DETECTION_2D_ARRAY)
    (result,) = back.detections[0].results
    assert (result.id, result.score, back.detections[0].tracking_id) == ('hold', 0.6, 'track7')


def test_a_bag_without_the_detection_definition_is_one_line():
    reader = SimpleNamespace(
        topics={'/image': SimpleNamespace(msgtype=messages.IMAGE),
                '/det': SimpleNamespace(msgtype=DETECTION_2D_ARRAY)},
        typestore=messages.load_typestore())  # what AnyReader falls back to without them
    with pytest.raises(BagInputError, match='does not store the message definition of '
                       f'{DETECTION_2D_ARRAY} \\(topic /det\\); record as mcap'):
        resolve_topics(reader, InputTopics(None, detections='/det'))
    reader.typestore = register_vision_msgs(messages.load_typestore())
    assert resolve_topics(reader, InputTopics(None, detections='/det')).image == '/image'
