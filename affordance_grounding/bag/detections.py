"""``affordance_detections`` in the output bag, typed from the input bag's own definitions.

vision_msgs is not among rosbags' stores and need not be installed: the reader has the types
from the bag's message definitions (bag/reading.py checks that it stores them), and the
output typestore gets every type it lacks from there, so the detector's messages are read and
the ranked copy is written with exactly the layout the detector recorded (vision_msgs 4.x or
3.x alike).
"""

from dataclasses import replace
from typing import List, Tuple

from affordance_grounding.bag import messages
from rosbags.typesys.store import Typestore


def register_missing_types(target: Typestore, source: Typestore) -> List[str]:
    """Register in ``target`` every type of ``source`` it lacks; returns their names.

    Types both know keep ``target``'s (Jazzy) definition: the outputs built from them must
    stay byte-identical to the node's.
    """
    missing = {name: definition for name, definition in source.fielddefs.items()
               if name not in target.fielddefs}
    if missing:
        target.register(missing)
    return sorted(missing)


def field_type(typestore: Typestore, msgtype: str, field: str) -> str:
    """Return the message type of a field, or of a sequence field's elements."""
    node_type, detail = dict(typestore.fielddefs[msgtype][1])[field]
    if node_type == messages.NODE_NAME:
        return detail
    return detail[0][1]  # (element node, length) of an array or a sequence


def to_affordance_detections(typestore: Typestore, msgtype: str, source,
                             ranked: List[Tuple[int, float]], action: str, header):
    """Return the detector's message, its detections re-scored for the action, best first.

    Args:
        typestore: Output typestore holding ``msgtype`` (:func:`register_missing_types`).
        msgtype: The Detection2DArray type name, as the bag spells it.
        source: The paired Detection2DArray, deserialized with ``typestore``.
        ranked: (detection index, score) best first (perception/detections.py,
            ``ranked_detections``); detections the frame job dropped are not in it.
        action: The action label, each detection's one ``class_id``.
        header: The colour image's header: as on every output (and the node's), so that it
            pairs with ``heatmap`` and ``grasp_point`` by exact stamp.

    Returns:
        A Detection2DArray with ``header``; each detection keeps its own header, ``bbox`` and
        ``id`` (and any other field of the detector's layout) and gets one hypothesis
        (class_id = action, score = the region's score, pose zero).
    """
    detection_type = field_type(typestore, msgtype, 'detections')
    hypothesis_type = field_type(typestore, detection_type, 'results')
    detections = [replace(source.detections[index],
                          results=[_hypothesis(typestore, hypothesis_type, action, score)])
                  for index, score in ranked]
    return replace(source, header=messages.copy_header(typestore, header),
                   detections=detections)


def _hypothesis(typestore: Typestore, msgtype: str, class_id: str, score: float):
    result = messages.build_default_message(typestore, msgtype)
    hypothesis = getattr(result, 'hypothesis', result)  # vision_msgs 4.x nests it; 3.x not
    if hasattr(hypothesis, 'class_id'):
        hypothesis.class_id = class_id
    else:
        hypothesis.id = class_id
    hypothesis.score = float(score)
    return result
