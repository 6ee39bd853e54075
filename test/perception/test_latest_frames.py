"""LatestFrames: how the worker assembles a batch from several cameras (no ROS)."""

import threading
import time

from affordance_grounding.perception.latest_frames import LatestFrames


def test_a_batch_holds_the_newest_frame_of_every_camera_that_has_one():
    frames = LatestFrames()
    for index in range(3):
        frames.put(f'head{index}', 'head')
    frames.put('wrist0', 'wrist')
    assert frames.take_batch(timeout_s=0.0) == {'head': 'head2', 'wrist': 'wrist0'}
    assert frames.received_by_camera == {'head': 3, 'wrist': 1}
    assert frames.dropped_by_camera == {'head': 2}
    assert (frames.received, frames.dropped) == (4, 2)
    assert frames.take_batch(timeout_s=0.01) == {}  # nothing fresh: nothing is reused


def test_a_silent_camera_never_holds_up_the_batch():
    frames = LatestFrames()
    frames.put('head0', 'head')  # wrist has never delivered
    start = time.monotonic()
    assert frames.take_batch(timeout_s=5.0) == {'head': 'head0'}
    assert time.monotonic() - start < 0.5
    frames.put('head1', 'head')
    frames.put('wrist0', 'wrist')
    assert frames.take_batch(timeout_s=0.0) == {'head': 'head1', 'wrist': 'wrist0'}
    frames.put('wrist1', 'wrist')  # head has gone silent: wrist alone, at once
    assert frames.take_batch(timeout_s=0.0) == {'wrist': 'wrist1'}


def test_take_batch_waits_for_the_first_frame_and_close_wakes_it():
    frames = LatestFrames()
    threading.Timer(0.05, frames.put, args=('frame', 'wrist')).start()
    assert frames.take_batch(timeout_s=5.0) == {'wrist': 'frame'}
    results = []
    waiter = threading.Thread(target=lambda: results.append(frames.take_batch()))
    waiter.start()
    time.sleep(0.05)
    frames.close()
    waiter.join(timeout=2.0)
    assert results == [{}]
    frames.reopen()
    frames.put('again')
    assert frames.take_batch(timeout_s=1.0) == {'': 'again'}
