"""LatestMailbox: newest item wins, replaced items are counted, close wakes waiters."""

import threading
import time

from affordance_grounding.runtime.latest_mailbox import LatestMailbox


def test_latest_mailbox_keeps_only_the_newest_and_counts_drops():
    mailbox = LatestMailbox()
    for item in range(5):
        mailbox.put(item)
    assert mailbox.take(timeout_s=0.0) == 4
    assert (mailbox.received, mailbox.dropped) == (5, 4)
    assert mailbox.take(timeout_s=0.01) is None


def test_latest_mailbox_take_waits_for_a_put_from_another_thread():
    mailbox = LatestMailbox()
    threading.Timer(0.05, mailbox.put, args=('frame',)).start()
    assert mailbox.take(timeout_s=5.0) == 'frame'
    assert mailbox.dropped == 0


def test_latest_mailbox_close_wakes_a_blocked_take_and_reopen_accepts_again():
    mailbox = LatestMailbox()
    results = []
    waiter = threading.Thread(target=lambda: results.append(mailbox.take()))
    waiter.start()
    time.sleep(0.05)
    mailbox.close()
    waiter.join(timeout=5.0)
    assert results == [None] and not waiter.is_alive()
    mailbox.reopen()
    mailbox.put('again')
    assert mailbox.take(timeout_s=1.0) == 'again'
