"""Frames lost between the camera and the node: where the FastDDS profile is, when to warn.

Best-effort images bigger than FastDDS's default 512 KiB shared-memory segment lose fragments
and are dropped whole; ``config/fastdds_large_images.xml`` fixes that when both the camera
driver and the node use it (README, "Large images from another process"). The node cannot fix
the sender, so it measures the loss per diagnostics window and tells the user what to set.
"""

import os
from pathlib import Path
from typing import Callable, Optional, Tuple

PACKAGE = 'affordance_grounding'
PROFILE_FILE_NAME = 'fastdds_large_images.xml'
# Fast DDS 2 (Humble, Jazzy) reads the first, Fast DDS 3 (Kilted and later) the second.
PROFILE_ENV_VARS: Tuple[str, ...] = ('FASTRTPS_DEFAULT_PROFILES_FILE',
                                     'FASTDDS_DEFAULT_PROFILES_FILE')
LOSS_WARN_FRACTION = 0.10
LOSS_WARN_PERIOD_S = 60.0


def installed_profile_path() -> str:
    """Return the shipped profile's path: the installed share/ copy, else the checkout's."""
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, OSError):  # not installed with colcon: a checkout
        share = Path(__file__).resolve().parents[2]
    return str(share / 'config' / PROFILE_FILE_NAME)


def profile_in_use() -> Optional[str]:
    """Return the FastDDS profiles file this process was started with, if any."""
    for name in PROFILE_ENV_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def loss_advice(lost: int, total: int, profile_path: str, in_use: Optional[str]) -> str:
    """One line: how many frames were lost and which profile to give to which process."""
    share = f'{lost} of {total} images ({lost / total:.0%}) lost in transport'
    if in_use:
        return (f'{share}; this node uses {in_use}: start the camera driver with the same '
                f'profile ({PROFILE_ENV_VARS[0]}={profile_path}), the shared-memory segment '
                'belongs to the sender')
    return (f'{share}; large best-effort images need bigger FastDDS buffers: set '
            f'{PROFILE_ENV_VARS[0]}={profile_path} for the camera driver and this node '
            f'({PROFILE_ENV_VARS[1]} on Fast DDS 3)')


class TransportLossMonitor:
    """Compares received and lost image counters per diagnostics window; throttles the WARN."""

    def __init__(self, clock: Callable[[], float], warn_fraction: float = LOSS_WARN_FRACTION,
                 warn_period_s: float = LOSS_WARN_PERIOD_S):
        """``clock`` is monotonic seconds; warn above ``warn_fraction``, once per period."""
        self._clock = clock
        self.warn_fraction = warn_fraction
        self.warn_period_s = warn_period_s
        self._last_counts = (0, 0)
        self._last_warned: Optional[float] = None
        self.window: Tuple[int, int] = (0, 0)  # (lost, received + lost) of the last window

    def update(self, received_total: int, lost_total: int) -> Tuple[bool, bool]:
        """Close a window with the running totals.

        Returns:
            (lossy, warn_now): the window lost more than ``warn_fraction`` of its images, and
            the caller should log the warning now (at most once per ``warn_period_s``).
        """
        received = received_total - self._last_counts[0]
        lost = lost_total - self._last_counts[1]
        self._last_counts = (received_total, lost_total)
        total = received + lost
        self.window = (lost, total)
        lossy = total > 0 and lost > self.warn_fraction * total
        if not lossy:
            return False, False
        now = self._clock()
        if self._last_warned is not None and now - self._last_warned < self.warn_period_s:
            return True, False
        self._last_warned = now
        return True, True

    def reset(self, received_total: int = 0, lost_total: int = 0) -> None:
        """Start counting from these totals (e.g. after re-subscribing)."""
        self._last_counts = (received_total, lost_total)
        self.window = (0, 0)
