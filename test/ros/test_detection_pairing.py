"""Images and detections paired by stamp, without ROS: both orders, give-ups explained."""

from types import SimpleNamespace as Msg

from affordance_grounding.perception.stamps import NS_PER_S
from affordance_grounding.ros.pairing import DETECTION_WAIT_S, DetectionPairer, StampedBuffer

SLOP_S = 0.05


def stamped(seconds, **fields):
    ns = int(round(seconds * NS_PER_S))
    return Msg(header=Msg(stamp=Msg(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)), **fields)


def test_detections_after_their_image_complete_the_pair():
    pairer = DetectionPairer()
    image, boxes = stamped(1.0), stamped(1.0, detections=[])
    assert pairer.add_image(image, SLOP_S) == (None, [])
    paired, problems = pairer.add_detections(boxes, SLOP_S)
    assert (paired.image, paired.detections, problems) == (image, boxes, [])
    assert pairer.add_detections(stamped(1.0), SLOP_S)[0] is None  # paired only once


def test_detections_before_their_image_wait_for_it_within_the_slop():
    pairer = DetectionPairer()
    boxes = stamped(2.0)
    assert pairer.add_detections(boxes, SLOP_S) == (None, [])
    paired, _ = pairer.add_image(stamped(2.03), SLOP_S)
    assert paired.detections is boxes


def test_images_a_slow_detector_skipped_are_given_up_when_a_later_answer_comes():
    pairer = DetectionPairer()
    for seconds in (1.0, 1.1, 1.2):
        pairer.add_image(stamped(seconds), SLOP_S)
    paired, problems = pairer.add_detections(stamped(1.2), SLOP_S)
    assert paired is not None
    assert [kind for kind, _ in problems] == ['no_detections', 'no_detections']


def test_stamps_that_never_match_are_counted_and_explained():
    pairer = DetectionPairer()
    pairer.add_detections(stamped(100.0), SLOP_S)  # a detector on another clock
    problems = []
    for index in range(40):
        paired, new = pairer.add_image(stamped(index * 0.1), SLOP_S)
        assert paired is None
        problems += new
    waited = int(DETECTION_WAIT_S / 0.1)
    assert len(problems) == 40 - waited - 1
    kind, message = problems[0]
    assert kind == 'no_detections'
    assert 'nearest detections stamp 100.000 s' in message and 'sync_slop_s=0.05' in message


def test_waiting_images_are_bounded():
    pairer = DetectionPairer(capacity=5)
    problems = []
    for index in range(12):
        problems += pairer.add_image(stamped(index * 0.01), SLOP_S)[1]
    assert len(problems) == 7
    assert 'no detections received yet' in problems[0][1]


def test_stamped_buffer_take_forgets_what_it_returns():
    buffer = StampedBuffer()
    buffer.add(10, 'a')
    assert buffer.nearest(1000) == (10, 'a') and buffer.closest(1000, 5) is None
    assert buffer.take(12, 5) == 'a' and buffer.take(12, 5) is None
