"""bench.inference's targets and printed table (the JSON report is built in bench.inference)."""

from typing import List, Optional

CPU_TARGET_ROOFLINE = 0.65
CPU_TARGET_SPEEDUP = 1.5
INT8_TARGET_SPEEDUP = 1.8
GPU_TARGET_B1_MS = 3.0
GPU_TARGET_B64_FPS = 2000.0


def evaluate_targets(report: dict) -> List[dict]:
    """List the issues' targets next to the measured values (those this machine can check)."""
    rows = report['results']
    targets = []
    cpu = [row for row in rows if row['device'] == 'cpu' and row['kind'] != 'reference'
           and row['precision'] == 'fp32' and row['batch'] == 1
           and 'in_rounds_of_batch' not in row]
    if cpu:
        best = min(cpu, key=lambda row: row['ms_per_frame'])
        for key, what in (('roofline_fraction', 'CPU peak fraction, batch 1'),
                          ('sgemm_fraction', 'CPU sgemm-roofline fraction (old), batch 1')):
            targets.append(_target(f"{what} ({best['backend']})", f'>= {CPU_TARGET_ROOFLINE}',
                                   best.get(key), CPU_TARGET_ROOFLINE))
        targets.append(_target(f"CPU speed-up vs reference, batch 1 ({best['backend']})",
                               f'>= {CPU_TARGET_SPEEDUP}', best['speedup_vs_reference'],
                               CPU_TARGET_SPEEDUP))
    by_label = {(row['backend'], row['batch']): row for row in rows}
    fp32 = by_label.get(('onnxruntime cpu fp32', 1))
    for row in rows:
        if fp32 and row['precision'] == 'int8' and row['batch'] == 1:
            ratio = round(fp32['ms_per_frame'] / row['ms_per_frame'], 2)
            name = f"int8 vs fp32 ONNX Runtime CPU speed-up, batch 1 ({row['backend']})"
            targets.append(_target(name, f'>= {INT8_TARGET_SPEEDUP}', ratio,
                                   INT8_TARGET_SPEEDUP))
    for row in rows:
        if row['precision'] in ('int8', 'fp16') and row['parity'] and row['batch'] == 1:
            targets.append({'target': f"{row['backend']} heatmap parity vs fp32",
                            'required': row['parity']['tolerance'],
                            'measured': row['parity']['min_map_cosine'],
                            'holds': row['parity']['ok']})
    for label in ('torch cuda fp16 + graphs', 'torch cuda fp16 + graphs (outputs on GPU)'):
        if (label, 1) in by_label:
            row = by_label[(label, 1)]
            targets.append({'target': f'{label}, batch 1 ms/frame',
                            'required': f'<= {GPU_TARGET_B1_MS}',
                            'measured': row['ms_per_frame'],
                            'holds': row['ms_per_frame'] <= GPU_TARGET_B1_MS})
        if (label, 64) in by_label:
            row = by_label[(label, 64)]
            targets.append({'target': f'{label}, batch 64 frames/s',
                            'required': f'>= {GPU_TARGET_B64_FPS}',
                            'measured': row['frames_per_s'],
                            'holds': row['frames_per_s'] >= GPU_TARGET_B64_FPS})
    return targets


def _target(name: str, required: str, measured: Optional[float], bound: float) -> dict:
    """Return a lower-bound target."""
    return {'target': name, 'required': required, 'measured': measured,
            'holds': None if measured is None else measured >= bound}


def format_table(report: dict) -> str:
    """Return the results as a fixed-width table."""
    from bench.roofline import format_peak

    machine = report['machine']
    lines = [f"{machine['cpu']} ({machine['cores']} cores), sgemm best-of "
             f"{machine.get('sgemm_gflops')} GFLOP/s, in rounds {report['sgemm_in_rounds_gflops']}"
             f", torch {machine['torch']}, onnxruntime {machine['onnxruntime']}, "
             f"tensorrt {machine['tensorrt']}, GPU {machine['gpu']}, "
             f"load {machine['load_average']} -> {report['load_average_end']}"]
    if report.get('peak'):
        lines.append(format_peak(report['peak']))
    lines.append(f"{'backend':44s} {'dev':4s} {'batch':>5s} {'ms/frame':>9s} {'frames/s':>9s} "
                 f"{'spread':>6s} {'peak':>6s} {'best':>6s} {'sgemm':>6s} {'same':>6s} "
                 f"{'vs ref':>7s}  parity")
    for row in report['results']:
        lines.append(
            f"{row['backend']:44s} {row['device']:4s} {row['batch']:5d} "
            f"{row['ms_per_frame']:9.2f} {row['frames_per_s']:9.1f} {row['spread']:6.0%} "
            f"{_percent(row.get('roofline_fraction')):>6s} "
            f"{_percent(row.get('roofline_fraction_best')):>6s} "
            f"{_percent(row.get('sgemm_fraction')):>6s} "
            f"{_percent(row.get('sgemm_fraction_same_load')):>6s} "
            f"{_ratio(row.get('speedup_vs_reference')):>7s}  {_parity_text(row['parity'])}")
    for skip in report['skipped']:
        lines.append(f"skipped: {skip['backend']} ({skip['device']}): {skip['reason']}")
    lines.append('reference vs ours (affinity * cam, one class): max relative difference '
                 f"{report['reference_parity_max_relative_difference']:.1e}")
    for target in report['targets']:
        verdict = {True: 'holds', False: 'NOT MET', None: 'n/a'}[target['holds']]
        lines.append(f"target {target['target']}: {target['required']}, measured "
                     f"{target['measured']} -> {verdict}")
    return '\n'.join(lines)


def _parity_text(parity: Optional[dict]) -> str:
    """ok/FAIL with max abs errors (fp32) or min map cosines (fp16, int8)."""
    if parity is None:
        return ''
    verdict = 'ok' if parity['ok'] else 'FAIL'
    if 'cosine' in parity['tolerance']:
        return f'{verdict} min cos ' + ', '.join(
            f'{name} {value:.4f}' for name, value in parity['min_map_cosine'].items())
    return f'{verdict} max abs ' + ', '.join(
        f'{name} {error:.1e}' for name, error in parity['max_abs_error'].items())


def _percent(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.0%}'


def _ratio(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}x'
