"""bench.cpuinfo and bench.roofline: ISA flags, cores, the peak's arithmetic, the GEMM probes."""

from bench import cpuinfo, roofline
import pytest

ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
cpu MHz\t\t: 2596.000
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512bw avx_vnni avx512_vnni avx512_bf16 aes

processor\t: 1
vendor_id\t: AuthenticAMD
cpu MHz\t\t: 2500.000
"""
ZEN3_FLAGS = ['sse', 'sse2', 'avx', 'fma', 'avx2', 'aes']


@pytest.fixture
def zen5_cpuinfo(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text(ZEN5)
    return str(path)


def test_flags_identity_and_isa_selection(zen5_cpuinfo):
    flags = cpuinfo.read_cpu_flags(zen5_cpuinfo)
    assert 'avx512_bf16' in flags
    assert cpuinfo.select_isa_flags(flags) == [
        'avx', 'avx2', 'avx512_bf16', 'avx512_vnni', 'avx512bw', 'avx512f', 'avx_vnni', 'fma',
        'sse', 'sse2']  # aes, fpu dropped
    identity = cpuinfo.read_cpu_identity(zen5_cpuinfo)
    assert identity == {'vendor': 'AuthenticAMD', 'family': 26, 'model': 2,
                        'cpuinfo_mhz': 2596.0}
    assert cpuinfo.cpu_model(zen5_cpuinfo) == 'AMD EPYC'


def test_physical_cores_counts_distinct_core_ids_not_hyperthreads(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text(''.join(f'processor\t: {index}\nphysical id\t: 0\ncore id\t\t: {index % 2}\n\n'
                            for index in range(4)))  # 2 cores x 2 hyperthreads
    assert cpuinfo.physical_cores(str(path)) == 2


def test_theoretical_peak_zen5_full_width_and_vnni(zen5_cpuinfo):
    flags = cpuinfo.read_cpu_flags(zen5_cpuinfo)
    peak = roofline.theoretical_peak(flags, cpuinfo.read_cpu_identity(zen5_cpuinfo), 2)
    # 16 lanes x 2 (FMA) x 2 pipes = 64 FLOP/cycle; x 2 cores x 2.596 GHz
    assert peak['flop_per_cycle_per_core'] == 64
    assert peak['fp32_gflops'] == pytest.approx(64 * 2 * 2.596, abs=0.1)
    assert peak['int8_gops'] == pytest.approx(4 * peak['fp32_gflops'], abs=0.2)
    assert 'Zen 5' in peak['derivation'] and '2596 MHz' in peak['derivation']
    boosted = roofline.theoretical_peak(flags, {'vendor': 'AuthenticAMD', 'family': 26}, 1,
                                        max_clock_mhz=4000.0)
    assert boosted['fp32_gflops'] == pytest.approx(256.0)
    assert boosted['clock_source'] == 'cpufreq cpuinfo_max_freq'


def test_theoretical_peak_zen3_avx2_and_zen4_split_pipes():
    zen3 = roofline.theoretical_peak(ZEN3_FLAGS, {'vendor': 'AuthenticAMD', 'family': 25,
                                                  'cpuinfo_mhz': 3000.0}, 2)
    assert zen3['flop_per_cycle_per_core'] == 32 and zen3['int8_gops'] == 2 * zen3['fp32_gflops']
    zen4 = roofline.theoretical_peak(ZEN3_FLAGS + ['avx512f'], {'vendor': 'AuthenticAMD',
                                                                'family': 25}, 2)
    assert zen4['flop_per_cycle_per_core'] == 32  # 512-bit ops on 256-bit pipes
    assert zen4['fp32_gflops'] is None and 'no clock' in zen4['derivation']


def test_onnxruntime_gemm_probes_measure_a_rate():
    assert roofline.measure_onnxruntime_gemm(64, False, 1, 2) > 0
    assert roofline.measure_onnxruntime_gemm(64, True, 1, 2) > 0


def test_measure_peak_takes_the_best_candidate(zen5_cpuinfo, monkeypatch):
    monkeypatch.setattr(roofline, 'read_max_clock_mhz', lambda: None)
    peak = roofline.measure_peak(threads=1, sgemm={'best': 1e6}, sizes=(64,), repeats=2,
                                 cpuinfo=zen5_cpuinfo)
    # 1e6 GFLOP/s on one core of 64 FLOP/cycle needs a 15.6 THz clock: the theoretical peak at
    # that clock equals the measured rate, and the int8 peak is 4 times it (VNNI).
    assert peak['fp32_gflops'] == pytest.approx(1e6)
    assert peak['implied_clock_mhz'] == pytest.approx(1e6 / 64 * 1e3, rel=1e-3)
    assert peak['int8_source'] == 'theoretical at the measured clock'
    assert peak['int8_gops'] == pytest.approx(4e6)
    assert peak['theoretical']['cores'] == 1 and 'avx512_vnni' in peak['isa_flags']
    assert 'roofline peak fp32 1000000.0' in roofline.format_peak(peak)
    slow = roofline.measure_peak(threads=1, sgemm={'best': 1.0}, sizes=(8,), repeats=1,
                                 cpuinfo=zen5_cpuinfo)  # tiny GEMMs: far below the bound
    assert slow['fp32_source'] == 'theoretical'
    assert slow['fp32_gflops'] == pytest.approx(166.1, abs=0.2)
