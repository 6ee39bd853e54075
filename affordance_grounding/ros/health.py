"""What the node knows about its own health: rates, latencies, drops and problems.

ROS-free bookkeeping that the node turns into ``/diagnostics`` (diagnostic_updater is not
installable everywhere, and the statistics are small). Every method is thread-safe: the
executor thread counts inputs and problems, the worker thread counts outputs and timings.
"""

from collections import deque
from dataclasses import dataclass
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

NO_FRAMES = 'none: no frames this period'  # the value of a per-period figure without samples


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        """Create a meter over the last ``window_s`` seconds of ``clock``."""
        self.window_s = window_s
        self._clock = clock
        self._times: Deque[float] = deque()
        self.total = 0

    def tick(self) -> None:
        """Record one event now."""
        now = self._clock()
        self._times.append(now)
        self.total += 1
        self._expire(now)

    def rate_hz(self) -> float:
        """Events per second in the window (0 with fewer than two events).

        While events keep coming this is (events - 1) / (their span), exact from the second
        event on, before the window has filled. A silence longer than the mean interval
        stretches the span to now (less one mean interval, so the value is continuous), so the
        rate falls as soon as a stream stops and reaches 0 when its events leave the window.
        """
        now = self._clock()
        self._expire(now)
        intervals = len(self._times) - 1
        if intervals < 1:
            return 0.0
        span = self._times[-1] - self._times[0]
        if span <= 0:
            return 0.0
        return intervals / max(span, now - self._times[0] - span / intervals)

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


@dataclass
class PeriodStats:
    """Count, mean and max of one quantity since the last diagnostics message."""

    count: int = 0
    total: float = 0.0
    maximum: float = 0.0

    def add(self, value: float) -> None:
        """Add one sample."""
        self.count += 1
        self.total += value
        self.maximum = max(self.maximum, value)

    @property
    def mean(self) -> float:
        """Mean of the samples (0 without samples)."""
        return self.total / self.count if self.count else 0.0

    def mean_max(self, scale: float = 1.0) -> Optional[Tuple[float, float]]:
        """(mean, max) times ``scale``; None without samples (an empty period says so)."""
        return (self.mean * scale, self.maximum * scale) if self.count else None


class ProblemLog:
    """Counts problems by kind and decides when each kind may be logged again (throttling).

    rclpy's ``throttle_duration_sec`` throttles per call site, so two different problems
    reported from one place would hide each other; this throttles per kind instead.
    """

    def __init__(self, period_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        """Log each kind at most once every ``period_s`` seconds."""
        self.period_s = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self.counts: Dict[str, int] = {}
        self._last_logged: Dict[str, float] = {}
        self.last_message = ''

    def report(self, kind: str, message: str) -> bool:
        """Count one problem; return True when the caller should log ``message`` now."""
        now = self._clock()
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.last_message = message
            last = self._last_logged.get(kind)
            if last is not None and now - last < self.period_s:
                return False
            self._last_logged[kind] = now
            return True


class NodeHealth:
    """Everything ``/diagnostics`` reports, gathered while the node runs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        """Start with empty statistics."""
        self._lock = threading.Lock()
        self.input_rate = RateMeter(clock=clock)
        self.output_rate = RateMeter(clock=clock)
        self.problems = ProblemLog(clock=clock)
        self._stages: Dict[str, PeriodStats] = {}
        self.delay = PeriodStats()
        self.batch_size = PeriodStats()  # frames (cameras) per inference
        self.stale_frames = 0
        self.lost_in_transport = 0
        self._clock = clock
        self._counts_batches = False  # named cameras: "frames per inference" is reported
        # The newest frame's age by the node's clock when it was taken, and when (``clock``):
        # a snapshot adds the time since, so the age keeps growing after frames stop.
        self._frame_age: Optional[Tuple[float, float]] = None
        self.old_stamp_age_s: Optional[float] = None  # set while frames look recorded

    def count_input(self) -> None:
        """One image arrived."""
        with self._lock:
            self.input_rate.tick()

    def count_output(self, stage_s: Dict[str, float], delay_s: float) -> None:
        """One frame was published; ``delay_s`` = publish time minus the image stamp."""
        with self._lock:
            self.output_rate.tick()
            for stage, seconds in stage_s.items():
                self._stages.setdefault(stage, PeriodStats()).add(seconds)
            self.delay.add(delay_s)

    def count_batch(self, frames: int) -> None:
        """One inference ran ``frames`` frames (one per camera that had a fresh frame)."""
        with self._lock:
            self._counts_batches = True
            self.batch_size.add(frames)

    def count_stale(self) -> None:
        """One frame was dropped because it was older than ``max_image_age_s``."""
        with self._lock:
            self.stale_frames += 1

    def note_frame_age(self, age_s: float, looks_recorded: bool) -> bool:
        """Record the newest frame's age; True when frames have just started to look recorded."""
        with self._lock:
            first = looks_recorded and self.old_stamp_age_s is None
            self._frame_age = (age_s, self._clock())
            self.old_stamp_age_s = age_s if looks_recorded else None
            return first

    def count_lost(self, count: int) -> None:
        """``count`` images were lost before reaching the node (middleware event)."""
        with self._lock:
            self.lost_in_transport += count

    def snapshot(self, reset_period: bool = True) -> 'HealthSnapshot':
        """Return the current figures; the per-period statistics restart when asked."""
        with self._lock:
            frame_age_s = (None if self._frame_age is None
                           else self._frame_age[0] + self._clock() - self._frame_age[1])
            snapshot = HealthSnapshot(
                input_hz=self.input_rate.rate_hz(), output_hz=self.output_rate.rate_hz(),
                images_received=self.input_rate.total, frames_published=self.output_rate.total,
                stale_frames=self.stale_frames, lost_in_transport=self.lost_in_transport,
                stage_ms={stage: stats.mean_max(1e3) for stage, stats in self._stages.items()},
                delay_ms=self.delay.mean_max(1e3),
                batch_size=self.batch_size.mean_max() if self._counts_batches else None,
                problems=dict(self.problems.counts), last_problem=self.problems.last_message,
                frame_age_s=frame_age_s, old_stamp_age_s=self.old_stamp_age_s,
                counts_batches=self._counts_batches)
            if reset_period:
                self._stages = {}
                self.delay = PeriodStats()
                self.batch_size = PeriodStats()
            return snapshot


@dataclass
class HealthSnapshot:
    """One reading of :class:`NodeHealth` (stage and delay figures are (mean, max) in ms)."""

    input_hz: float
    output_hz: float
    images_received: int
    frames_published: int
    stale_frames: int
    lost_in_transport: int
    stage_ms: Dict[str, Tuple[float, float]]
    delay_ms: Optional[Tuple[float, float]]  # None: no frame published this period
    problems: Dict[str, int]
    last_problem: str = ''
    frame_age_s: Optional[float] = None  # grows while no frame arrives
    old_stamp_age_s: Optional[float] = None
    batch_size: Optional[Tuple[float, float]] = None  # (mean, max) frames per inference
    counts_batches: bool = False  # report frames per inference (named cameras)

    def to_key_values(self, extra: Optional[Dict[str, str]] = None) -> List[Tuple[str, str]]:
        """Flatten into ``(key, value)`` strings for a ``DiagnosticStatus``."""
        pairs = list((extra or {}).items()) + [
            ('input rate (Hz)', f'{self.input_hz:.2f}'),
            ('output rate (Hz)', f'{self.output_hz:.2f}'),
            ('images received', str(self.images_received)),
            ('frames published', str(self.frames_published)),
            ('stale frames dropped', str(self.stale_frames)),
            ('images lost in transport', str(self.lost_in_transport)),
            *_mean_max_pairs('delay from stamp', ' (ms)', self.delay_ms, '.1f', '.1f'),
            ('newest frame age (s)',
             'none' if self.frame_age_s is None else f'{self.frame_age_s:.3f}'),
        ]
        if self.counts_batches:
            pairs += _mean_max_pairs('frames per inference', '', self.batch_size, '.2f', '.0f')
        for stage, mean_max in sorted(self.stage_ms.items()):
            pairs += _mean_max_pairs(stage, ' (ms)', mean_max, '.2f', '.2f')
        pairs += [(f'problem: {kind}', str(count))
                  for kind, count in sorted(self.problems.items())]
        if self.last_problem:
            pairs.append(('last problem', self.last_problem))
        return pairs


def _mean_max_pairs(name: str, unit: str, mean_max: Optional[Tuple[float, float]],
                    mean_format: str, max_format: str) -> List[Tuple[str, str]]:
    """``<name> mean<unit>`` and ``<name> max<unit>``, or what an empty period says."""
    if mean_max is None:
        return [(f'{name} mean{unit}', NO_FRAMES), (f'{name} max{unit}', NO_FRAMES)]
    return [(f'{name} mean{unit}', format(mean_max[0], mean_format)),
            (f'{name} max{unit}', format(mean_max[1], max_format))]


def summarise_health(snapshot: HealthSnapshot, phase: str, failure: str, action: str,
                     expected_rate_hz: float, warnings: Sequence[str] = ()) -> Tuple[str, str]:
    """Return the diagnostics (level, message): ``ok``, ``warn`` or ``error`` and one line.

    ``warnings`` are problems of the input stream (recorded stamps, images lost in
    transport); while active they come first, joined, since they explain the rates.
    """
    if failure:
        return 'error', failure
    if phase != 'active':
        return 'warn', f'node is {phase}'
    if warnings:
        return 'warn', '; '.join(warnings)
    if not action:
        return 'ok', 'idle: no action set'
    if snapshot.input_hz == 0.0:
        return 'warn', 'no images received'
    if snapshot.output_hz < expected_rate_hz:
        return 'warn', (f'output {snapshot.output_hz:.1f} Hz below expected_rate_hz '
                        f'{expected_rate_hz}')
    return 'ok', f'{snapshot.output_hz:.1f} Hz'
