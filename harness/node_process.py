"""The node as a child process (``--ros-args --params-file``), for the demo, benchmarks, tests.

What ``ros2 launch`` does on a ROS machine, minus launch_ros: start the executable with a
params file, overrides and a namespace, keep its log, stop it with Ctrl-C. Checkout only: the
default params file is the checkout's ``config/params.yaml``.
"""

import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import Callable, Iterator, Mapping, Optional

CHECKOUT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = CHECKOUT_ROOT / 'config' / 'params.yaml'
NODE_MODULE = 'affordance_grounding.ros.main'


def format_parameter(value) -> str:
    """Write a Python value as the right-hand side of ``-p name:=value``."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return value or '""'
    return str(value)


class NodeProcess:
    """``python -m affordance_grounding.ros.main --ros-args ...`` running as a child."""

    def __init__(self, log_path: Path, parameters: Mapping[str, object],
                 namespace: str = '/affordance', params_file: Optional[Path] = None,
                 module: str = NODE_MODULE, env: Optional[Mapping[str, str]] = None,
                 preexec_fn: Optional[Callable[[], None]] = None):
        """Start the node with ``params_file`` (default config/params.yaml) plus overrides.

        ``module`` runs another entry point with the node's arguments (e.g.
        :mod:`harness.slow_node`); ``env`` adds environment variables; ``preexec_fn`` runs in
        the child before the node starts (e.g. to inherit an ignored SIGINT, as from
        ``nohup``).
        """
        command = [sys.executable, '-m', module, '--ros-args',
                   '-r', f'__ns:={namespace}', '--params-file',
                   str(params_file or DEFAULT_PARAMS)]
        for name, value in parameters.items():
            command += ['-p', f'{name}:={format_parameter(value)}']
        self.log_path = Path(log_path)
        self._log = open(self.log_path, 'w')
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=CHECKOUT_ROOT, env=dict(os.environ, **(env or {})),
                                        preexec_fn=preexec_fn)

    def log(self) -> str:
        """Return everything the node printed so far."""
        return self.log_path.read_text()

    def rss_mib(self) -> float:
        """Return the resident memory of the node process in MiB (Linux)."""
        return self._read_status_mib('VmRSS')

    def peak_rss_mib(self) -> float:
        """Return the peak resident memory of the node process so far in MiB (Linux)."""
        return self._read_status_mib('VmHWM')

    def _read_status_mib(self, field: str) -> float:
        for line in Path(f'/proc/{self.process.pid}/status').read_text().splitlines():
            if line.startswith(f'{field}:'):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError(f'{field} not found in /proc/{self.process.pid}/status')

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> str:
        """Wait until ``text`` appears in the log; raise if the process dies first."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f'node exited with {self.process.returncode}:\n{self.log()}')
            if time.monotonic() > deadline:
                raise TimeoutError(f'{text!r} not logged within {timeout_s} s:\n{self.log()}')
            time.sleep(0.1)
        return self.log()

    def stop(self, timeout_s: float = 15.0) -> int:
        """Ctrl-C the node like a terminal would; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def serve_node(log_path: Path, parameters: Mapping[str, object]) -> Iterator[NodeProcess]:
    """Yield a node once it is active (a module fixture's body); it must exit cleanly after."""
    process = NodeProcess(log_path, parameters)
    process.wait_for_log('out /affordance/active_action')
    yield process
    assert process.stop() == 0, process.log()
