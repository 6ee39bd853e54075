"""training.quantize and ``training.export --precision int8``: what is quantized, the gate."""

import logging

from affordance_grounding.inference.backends import OnnxRuntimeBackend
from affordance_grounding.inference.onnx_model import load_onnx_model, read_onnx_metadata
from affordance_grounding.inference.selection import Environment, select_backend
import cv2
import numpy as np
import pytest
from training import export, parity, quantize

GPU_MACHINE = Environment(cuda_available=True, tensorrt_problem=None, onnxruntime_problem=None,
                          onnxruntime_providers=('CUDAExecutionProvider',
                                                 'CPUExecutionProvider'))
TINY_GATE = parity.INT8_MIN_COSINE  # the tiny model measures >= 0.9998


@pytest.fixture(scope='module')
def tiny_int8(tiny_onnx, tmp_path_factory):
    path = tmp_path_factory.mktemp('int8') / 'tiny_int8.onnx'
    report = quantize.quantize_onnx(str(tiny_onnx), str(path),
                                    quantize.QuantizeOptions(min_cosine=TINY_GATE))
    return path, report


def test_only_backbone_block_matmuls_with_weights_are_selected(tiny_onnx):
    model = load_onnx_model(str(tiny_onnx))
    chosen, kept = quantize.select_backbone_matmuls(model)
    scopes = {node.name: quantize.node_scope(node) for node in model.graph.node}
    assert chosen and all(quantize.BLOCK_SCOPE.search(scopes[name]) for name in chosen)
    assert not any('head' in scopes[name] for name in chosen)
    kept_scopes = [scopes[name] for name in kept]
    assert any('grounder.head' in scope for scope in kept_scopes)  # the head stays fp32
    assert any('scaled_dot_product_attention' in scope for scope in kept_scopes)  # softmax path


def test_dynamic_int8_graph_is_marked_and_gated(tiny_int8, tiny_onnx):
    path, report = tiny_int8
    model = load_onnx_model(str(path))
    assert read_onnx_metadata(model, str(path)).precision == 'int8'
    props = {entry.key: entry.value for entry in model.metadata_props}
    assert props['quantization'] == 'dynamic'
    ops = {node.op_type for node in model.graph.node}
    assert 'MatMulInteger' in ops and 'LayerNormalization' in ops and 'Softmax' in ops
    assert report.quantized_nodes > 0 and report.kept_fp32_nodes > 0
    assert min(report.min_cosine[name] for name in parity.COSINE_GATED_OUTPUTS) >= TINY_GATE
    assert 'random normal images' in report.parity_images
    assert 'int8 dynamic' in quantize.format_quantize_report(report)


def test_backend_says_int8_and_matches_fp32(tiny_int8, tiny_onnx, tiny_images):
    int8 = OnnxRuntimeBackend(str(tiny_int8[0])).load()
    fp32 = OnnxRuntimeBackend(str(tiny_onnx)).load()
    assert int8.precision == 'int8'
    assert int8.describe() == 'onnxruntime on cpu (int8: dynamic MatMul/Gemm, the rest fp32)'
    assert fp32.describe() == 'onnxruntime on cpu (fp32)'
    got, want = int8.infer(tiny_images), fp32.infer(tiny_images)
    assert parity.compute_min_map_cosine(got.cam, want.cam) > TINY_GATE
    assert not np.array_equal(got.cam, want.cam)  # really a different (quantized) graph


def test_auto_selection_keeps_int8_graphs_off_the_gpu(tiny_int8, caplog):
    with caplog.at_level(logging.INFO, logger='affordance_grounding.inference.selection'):
        backend = select_backend('auto', str(tiny_int8[0]), environment=GPU_MACHINE)
    assert (backend.name, backend.device, backend.precision) == ('onnxruntime', 'cpu', 'int8')
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith('skipping')]
    assert len(skipped) == 3 and 'int8 graph' in skipped[0] and 'int8 graph' in skipped[2]


def test_gate_failure_writes_nothing(tiny_onnx, tmp_path):
    out = tmp_path / 'bad.onnx'
    with pytest.raises(quantize.QuantizationError, match='differ from fp32'):
        quantize.quantize_onnx(str(tiny_onnx), str(out),
                               quantize.QuantizeOptions(min_cosine=1.000001))
    assert not out.exists() and not list(tmp_path.glob('*.tmp'))


def _write_images(folder, count):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for index in range(count):
        image = cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), (9, 9), 3)
        cv2.imwrite(str(folder / f'{index}.png'), image)
    return folder


def test_static_needs_images_then_calibrates_on_them(tiny_onnx, tmp_path):
    with pytest.raises(quantize.QuantizationError, match='calibration images'):
        quantize.quantize_onnx(str(tiny_onnx), str(tmp_path / 'a.onnx'),
                               quantize.QuantizeOptions(method='static'))
    images = quantize.list_image_files(str(_write_images(tmp_path / 'train' / 'x', 9)))
    report = quantize.quantize_onnx(
        str(tiny_onnx), str(tmp_path / 'static.onnx'),
        quantize.QuantizeOptions(method='static', calibration_images=tuple(map(str, images)),
                                 calibration_count=6, parity_count=3, min_cosine=0.9))
    model = load_onnx_model(str(tmp_path / 'static.onnx'))
    assert {'QuantizeLinear', 'DequantizeLinear'} <= {node.op_type for node in model.graph.node}
    assert report.parity_images == '3 images held out from 6 used for calibration'
    calibration, held_out = quantize.split_images(images, 6, 3, 0)
    assert not set(calibration) & set(held_out)


@pytest.mark.slow  # an end-to-end run: make test runs it, make test-fast does not
def test_export_cli_int8_from_config(tiny_config_path, tmp_path, capsys):
    out = tmp_path / 'cli_int8.onnx'
    users_file = tmp_path / 'cli_int8.fp32.onnx'  # a name the intermediate once took
    users_file.write_bytes(b'not ours')
    code = export.main(['--config', str(tiny_config_path), '--out', str(out), '--precision',
                        'int8', '--int8-min-cosine', '0.9', '--skip-tensorrt-check'])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert read_onnx_metadata(load_onnx_model(str(out)), str(out)).precision == 'int8'
    written = [line.split()[1] for line in printed.out.splitlines() if line.startswith('wrote ')]
    assert written == [str(out)]  # no line names the fp32 intermediate as written
    assert 'fp32 source (temporary, removed after quantizing)' in printed.out
    assert set(tmp_path.iterdir()) == {out, users_file}  # the intermediate is gone
    assert users_file.read_bytes() == b'not ours'
    assert export.main(['--onnx', str(out), '--out', str(tmp_path / 'b.onnx'), '--precision',
                        'int8']) == 2  # an int8 file is no fp32 source
    assert 'int8 starts from fp32' in capsys.readouterr().err
    assert export.main(['--config', str(tiny_config_path), '--out', str(tmp_path / 'c.onnx'),
                        '--precision', 'int8', '--int8-images',
                        str(tmp_path / 'missing')]) == 2
    assert 'calibration data not found' in capsys.readouterr().err


def test_int8_image_options_are_named_apart_from_the_heatmap_calibration(capsys):
    parser = export.build_parser()
    assert '--calibration-data' not in parser.format_help()
    args = parser.parse_args(['--onnx', 'a.onnx', '--out', 'b.onnx', '--int8-images', 'imgs',
                              '--int8-calibration-count', '4', '--calibration', 'none'])
    assert (args.int8_images, args.int8_calibration_count, args.calibration) == \
        ('imgs', 4, 'none')
    assert capsys.readouterr().err == ''
    old = parser.parse_args(['--onnx', 'a.onnx', '--out', 'b.onnx', '--calibration-data', 'imgs',
                             '--calibration-count', '4'])
    assert (old.int8_images, old.int8_calibration_count) == ('imgs', 4)
    assert capsys.readouterr().err.splitlines() == [
        'warning: --calibration-data is deprecated; use --int8-images',
        'warning: --calibration-count is deprecated; use --int8-calibration-count']
