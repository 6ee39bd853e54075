"""keep_large_buffers: MB-sized arrays stop costing a page fault per page after the first."""

import subprocess
import sys

import pytest

CHILD = """
from affordance_grounding.perception.allocator import keep_large_buffers
import numpy as np
import resource, sys
applied = keep_large_buffers() if sys.argv[1] == 'keep' else None
def frame():  # a frame's large arrays (heatmap, mask, payloads): alive together, then freed
    arrays = [np.ones(1 << 20, dtype=np.float32) for _ in range(4)]  # 4 x 4 MB
    del arrays
frame()  # the first frame's pages are fresh either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    frame()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode):
    completed = subprocess.run([sys.executable, '-c', CHILD, mode], capture_output=True,
                               text=True, check=True, timeout=120)
    applied, count = completed.stdout.split()
    return applied, int(count)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc only')
def test_keep_large_buffers_removes_the_page_faults_of_repeated_large_arrays():
    applied, kept = faults('keep')
    if applied != 'True':
        pytest.skip('the C library is not glibc')
    _, default = faults('default')
    assert default >= 20 * 900  # glibc returns the freed heap top: fresh 4 KiB pages per frame
    assert kept * 20 < default, (kept, default)  # the same blocks reused from the heap
