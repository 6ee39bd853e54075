"""``affordance_detections`` layout and the vision_msgs check (a stand-in vision_msgs module).

vision_msgs is not installable on every machine (nor on this one), so the builder is checked
against minimal stand-in classes with vision_msgs 4's field names; the live test in
``test_node_regions.py`` runs the real package where it is installed.
"""

import importlib.util
import sys
import types

from affordance_grounding.perception.frame_processor import FrameResult
from affordance_grounding.perception.regions import Region
from affordance_grounding.ros import detection_messages
from affordance_grounding.ros.params import NodeConfig, ParameterError
import numpy as np
import pytest
from std_msgs.msg import Header

pytestmark = pytest.mark.ros


class _Message:
    """A message stand-in: keyword fields, defaults from ``FIELDS``."""

    FIELDS = {}

    def __init__(self, **fields):
        for name, default in self.FIELDS.items():
            setattr(self, name, fields.get(name, default() if callable(default) else default))


@pytest.fixture
def fake_vision_msgs(monkeypatch):
    """Install a minimal vision_msgs.msg (4.x field names) for this test."""
    module = types.ModuleType('vision_msgs.msg')

    class ObjectHypothesis(_Message):
        FIELDS = {'class_id': '', 'score': 0.0}

    class ObjectHypothesisWithPose(_Message):
        FIELDS = {'hypothesis': ObjectHypothesis, 'pose': None}

    class Detection2D(_Message):
        FIELDS = {'header': Header, 'results': list, 'bbox': None, 'id': ''}

    class Detection2DArray(_Message):
        FIELDS = {'header': Header, 'detections': list}

    for cls in (ObjectHypothesis, ObjectHypothesisWithPose, Detection2D, Detection2DArray):
        setattr(module, cls.__name__, cls)
    package = types.ModuleType('vision_msgs')
    package.msg = module
    monkeypatch.setitem(sys.modules, 'vision_msgs', package)
    monkeypatch.setitem(sys.modules, 'vision_msgs.msg', module)
    return module


def test_affordance_detections_echo_the_inputs_that_ran_best_first(fake_vision_msgs):
    image_header = Header(frame_id='camera_color_optical_frame')
    image_header.stamp.sec = 42
    inputs = types.SimpleNamespace(detections=[
        fake_vision_msgs.Detection2D(header=Header(frame_id=f'det{index}'), id=f'obj{index}',
                                     bbox=f'bbox{index}') for index in range(3)])
    result = FrameResult(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8), None,
                         regions=(Region(0, 0, 2, 2, detection_index=2),
                                  Region(1, 1, 2, 2, detection_index=0)),
                         region_scores=np.array([0.3, 0.8]))
    output = detection_messages.to_affordance_detections(image_header, inputs, result,
                                                         'cut_with')
    assert output.header.stamp.sec == 42 and output.header is not image_header
    assert [d.id for d in output.detections] == ['obj0', 'obj2']  # obj1 did not run
    assert [d.bbox for d in output.detections] == ['bbox0', 'bbox2']
    assert [d.header.frame_id for d in output.detections] == ['det0', 'det2']
    hypotheses = [d.results for d in output.detections]
    assert [[(h.hypothesis.class_id, h.hypothesis.score) for h in r] for r in hypotheses] == [
        [('cut_with', 0.8)], [('cut_with', 0.3)]]


@pytest.mark.skipif(importlib.util.find_spec('vision_msgs') is not None,
                    reason='vision_msgs is installed')
def test_missing_vision_msgs_is_one_line_naming_the_package(monkeypatch):
    monkeypatch.setenv('ROS_DISTRO', 'jazzy')
    detection_messages.require_message_packages(NodeConfig(roi_source='roi'))  # not needed
    with pytest.raises(ParameterError) as error:
        detection_messages.require_message_packages(NodeConfig(roi_source='detections'))
    message = str(error.value)
    assert '\n' not in message and 'ros-jazzy-vision-msgs' in message
