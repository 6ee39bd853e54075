"""What /proc/cpuinfo and cpufreq say about the CPU: model, cores, SIMD flags, clock.

Read by ``bench.machine`` (the machine block of every benchmark JSON) and ``bench.roofline``
(the theoretical peak). Every reader takes the file to read, so tests pass a sample.
"""

import os
from pathlib import Path
import platform
from typing import Dict, List, Optional, Sequence

CPUINFO = '/proc/cpuinfo'
# Feature flags worth keeping in a benchmark JSON: the SIMD extensions the kernels dispatch on.
ISA_PREFIXES = ('sse', 'ssse', 'avx', 'fma', 'f16c', 'amx', 'vnni', 'bf16', 'fp16', 'asimd',
                'sve', 'neon', 'i8mm', 'dotprod')


def read_cpu_flags(cpuinfo: str = CPUINFO) -> List[str]:
    """Return the first processor's feature flags (``flags`` on x86, ``Features`` on Arm)."""
    try:
        with open(cpuinfo) as stream:
            for line in stream:
                key, _, value = line.partition(':')
                if key.strip() in ('flags', 'Features'):
                    return value.split()
    except OSError:
        pass
    return []


def select_isa_flags(flags: Sequence[str]) -> List[str]:
    """Keep the SIMD-related flags (sorted): what a GEMM kernel can dispatch on."""
    return sorted(flag for flag in set(flags) if flag.startswith(ISA_PREFIXES)
                  or any(part in flag for part in ('vnni', 'bf16', 'amx')))


def read_cpu_identity(cpuinfo: str = CPUINFO) -> Dict[str, object]:
    """Vendor, family, model and the highest per-core ``cpu MHz`` of /proc/cpuinfo."""
    identity: Dict[str, object] = {}
    mhz: List[float] = []
    try:
        with open(cpuinfo) as stream:
            for line in stream:
                key, _, value = line.partition(':')
                key, value = key.strip(), value.strip()
                if key == 'vendor_id' and 'vendor' not in identity:
                    identity['vendor'] = value
                elif key == 'cpu family' and 'family' not in identity:
                    identity['family'] = int(value)
                elif key == 'model' and 'model' not in identity:
                    identity['model'] = int(value)
                elif key == 'cpu MHz':
                    mhz.append(float(value))
    except (OSError, ValueError):
        pass
    if mhz:
        identity['cpuinfo_mhz'] = max(mhz)
    return identity


def read_max_clock_mhz(sysfs: str = '/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq'
                       ) -> Optional[float]:
    """Return the highest clock the cpufreq driver reports in MHz (absent in most VMs)."""
    try:
        return int(Path(sysfs).read_text().strip()) / 1e3
    except (OSError, ValueError):
        return None


def cpu_model(cpuinfo: str = CPUINFO) -> str:
    """Return the CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open(cpuinfo) as stream:
            for line in stream:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def physical_cores(cpuinfo: str = CPUINFO) -> int:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; os.cpu_count() as fallback."""
    cores = set()
    physical = core = None
    try:
        with open(cpuinfo) as stream:
            for line in stream:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'physical id':
                    physical = value.strip()
                elif key == 'core id':
                    core = value.strip()
                elif not key and core is not None:
                    cores.add((physical, core))
                    physical = core = None
        if core is not None:
            cores.add((physical, core))
    except OSError:
        pass
    return len(cores) or os.cpu_count() or 1
