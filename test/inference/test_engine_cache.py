"""TensorRT engine cache: keys, metadata round trip, rebuild decisions, precision plans."""

import dataclasses
import json

from affordance_grounding.inference import engine_build
from affordance_grounding.inference.engine_cache import (
    cached_engine_path, check_engine_runs_here, compute_engine_key, engine_metadata_path,
    EngineCacheKey, EngineMetadata, find_key_mismatches, find_rebuild_reason, plan_precision,
    PrecisionPlan, read_engine_metadata, write_engine_metadata)
from affordance_grounding.inference.io_spec import (
    compute_file_sha256, ModelFileError, ModelMetadata)
import pytest

KEY = EngineCacheKey(onnx_sha256='a' * 64, tensorrt_version='10.3.0', compute_capability='8.7',
                     precision='fp16', max_batch=8)
MODEL = ModelMetadata(labels=('hold', 'cut'), calibration='clip', image_size=224, grid_size=14,
                      mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), precision='fp16',
                      source_sha256='b' * 64)


@pytest.fixture
def cached_engine(tmp_path):
    """Write a fake engine with matching metadata; returns the engine path."""
    engine = tmp_path / 'model.fp16.engine'
    engine.write_bytes(b'serialized engine bytes')
    write_engine_metadata(str(engine_metadata_path(engine)),
                          EngineMetadata(KEY, compute_file_sha256(str(engine)), MODEL,
                                         gpu_name='Orin', build_seconds=321.0))
    return engine


@pytest.mark.parametrize('field, value', [('onnx_sha256', 'c' * 64),
                                          ('tensorrt_version', '11.0.0'),
                                          ('compute_capability', '9.0'),
                                          ('precision', 'fp32'), ('max_batch', 16)])
def test_engine_key_digest_changes_with_each_component(field, value):
    changed = dataclasses.replace(KEY, **{field: value})
    assert changed.digest() != KEY.digest()
    assert len(KEY.digest()) == 16
    assert dataclasses.replace(KEY).digest() == KEY.digest()
    assert find_key_mismatches(KEY, changed) == [f'{field} {getattr(KEY, field)} != {value}']


def test_compute_engine_key_hashes_the_onnx_file(tmp_path):
    onnx_path = tmp_path / 'model.onnx'
    onnx_path.write_bytes(b'graph v1')
    first = compute_engine_key(str(onnx_path), '10.3.0', '8.7', 'fp16', 8)
    onnx_path.write_bytes(b'graph v2')
    second = compute_engine_key(str(onnx_path), '10.3.0', '8.7', 'fp16', 8)
    assert first.onnx_sha256 != second.onnx_sha256
    assert first.digest() != second.digest()


def test_cached_engine_path_is_named_by_precision_and_key(tmp_path):
    path = cached_engine_path(str(tmp_path / 'model.onnx'), None, KEY)
    assert path == tmp_path / f'model.fp16.{KEY.digest()}.engine'
    assert cached_engine_path('x/model.onnx', str(tmp_path / 'cache'), KEY).parent == (
        tmp_path / 'cache')
    assert engine_metadata_path(path) == path.with_suffix('.json')


def test_engine_metadata_round_trip(cached_engine):
    metadata = read_engine_metadata(str(engine_metadata_path(cached_engine)))
    assert metadata.key == KEY
    assert metadata.model == MODEL
    assert (metadata.gpu_name, metadata.build_seconds) == ('Orin', 321.0)
    assert metadata.engine_sha256 == compute_file_sha256(str(cached_engine))


@pytest.mark.parametrize('text, match', [('{not json', 'not valid JSON'),
                                         ('{"format": "other"}', 'not an engine metadata'),
                                         ('[]', 'not an engine metadata')])
def test_read_engine_metadata_rejects_bad_files(tmp_path, text, match):
    path = tmp_path / 'model.json'
    path.write_text(text)
    with pytest.raises(ModelFileError, match=match):
        read_engine_metadata(str(path))


def test_read_engine_metadata_rejects_missing_key_fields(cached_engine):
    meta_path = engine_metadata_path(cached_engine)
    data = json.loads(meta_path.read_text())
    del data['key']['compute_capability']
    meta_path.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match='malformed engine metadata'):
        read_engine_metadata(str(meta_path))


def test_find_rebuild_reason_accepts_a_matching_engine(cached_engine):
    assert find_rebuild_reason(str(cached_engine), KEY) is None


def test_find_rebuild_reason_names_what_changed(cached_engine, tmp_path):
    other_gpu = dataclasses.replace(KEY, compute_capability='9.0', tensorrt_version='11.1.0')
    reason = find_rebuild_reason(str(cached_engine), other_gpu)
    assert 'tensorrt_version 10.3.0 != 11.1.0' in reason
    assert 'compute_capability 8.7 != 9.0' in reason
    assert 'no engine at' in find_rebuild_reason(str(tmp_path / 'absent.engine'), KEY)


def test_find_rebuild_reason_detects_truncated_engine_and_missing_metadata(cached_engine):
    cached_engine.write_bytes(b'serialized')  # truncated
    assert 'hash' in find_rebuild_reason(str(cached_engine), KEY)
    engine_metadata_path(cached_engine).unlink()
    assert 'engine metadata not found' in find_rebuild_reason(str(cached_engine), KEY)


def test_check_engine_runs_here_refuses_other_targets(cached_engine):
    metadata = read_engine_metadata(str(engine_metadata_path(cached_engine)))
    check_engine_runs_here(metadata, str(cached_engine), '10.3.0', '8.7')  # matches: no error
    with pytest.raises(ModelFileError) as info:
        check_engine_runs_here(metadata, str(cached_engine), '10.7.0', '9.0')
    message = str(info.value)
    assert 'TensorRT 10.3.0 (this machine: 10.7.0)' in message
    assert 'compute capability 8.7 (this GPU: 9.0)' in message
    assert 'build_engine' in message
    cached_engine.write_bytes(b'tampered')
    with pytest.raises(ModelFileError, match='hash'):
        check_engine_runs_here(metadata, str(cached_engine), '10.3.0', '8.7')


@pytest.mark.parametrize('fp16_typed, requested, has_flag, expected', [
    (True, 'fp16', True, PrecisionPlan(True, False, 'fp16')),
    (True, 'fp16', False, PrecisionPlan(True, False, 'fp16')),
    (False, 'fp32', False, PrecisionPlan(True, False, 'fp32')),
    (False, 'fp16', True, PrecisionPlan(False, True, 'fp16')),
    (True, 'auto', False, PrecisionPlan(True, False, 'fp16')),
    (False, 'auto', True, PrecisionPlan(True, False, 'fp32')),
])
def test_plan_precision(fp16_typed, requested, has_flag, expected):
    assert plan_precision(fp16_typed, requested, has_flag) == expected


@pytest.mark.parametrize('fp16_typed, requested, has_flag, match', [
    (True, 'fp32', True, 'FP16-typed'),
    (False, 'fp16', False, 'FP16-typed export'),
    (False, 'int8', True, 'unknown precision'),
])
def test_plan_precision_refusals_say_what_to_do(fp16_typed, requested, has_flag, match):
    with pytest.raises(ValueError, match=match):
        plan_precision(fp16_typed, requested, has_flag)


def test_build_engine_cli_without_tensorrt_explains(tiny_onnx, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip('tensorrt is installed')
    except ImportError:
        pass
    assert engine_build.main(['--onnx', str(tiny_onnx), '--cache-dir', '/nonexistent']) == 2
    assert 'tensorrt is not importable' in capsys.readouterr().err


def test_build_engine_cli_missing_onnx_names_it(tmp_path, capsys):
    path = tmp_path / 'absent.onnx'
    assert engine_build.main(['--onnx', str(path)]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and 'not found' in error


class FakeTensorRT:
    """Just enough of the tensorrt module for ensure_engine's cache decisions."""

    __version__ = '10.3.0'

    class BuilderFlag:
        """TensorRT 10 still has the FP16 flag."""

        FP16 = 'fp16'


@pytest.fixture
def fake_target(monkeypatch, tmp_path):
    """Pretend to be a Jetson with TensorRT 10.3; record (path, key, plan) of every build."""
    builds = []

    def fake_build(onnx_path, engine_path, key, plan, options):
        engine_path.write_bytes(b'engine for ' + key.digest().encode())
        write_engine_metadata(str(engine_metadata_path(engine_path)),
                              EngineMetadata(key, compute_file_sha256(str(engine_path)), MODEL))
        builds.append((engine_path, key, plan))

    monkeypatch.setattr(engine_build, 'import_tensorrt', lambda: FakeTensorRT)
    monkeypatch.setattr(engine_build, 'probe_target',
                        lambda index=0: (FakeTensorRT.__version__, '8.7', 'Orin'))
    monkeypatch.setattr(engine_build, 'build_engine_file', fake_build)
    return builds


def test_ensure_engine_builds_once_then_reuses(tiny_onnx, tmp_path, fake_target):
    options = engine_build.EngineBuildOptions(precision='auto', max_batch=4)
    first = engine_build.ensure_engine(str(tiny_onnx), cache_dir=str(tmp_path), options=options)
    second = engine_build.ensure_engine(str(tiny_onnx), cache_dir=str(tmp_path), options=options)
    assert first == second and len(fake_target) == 1
    key = fake_target[0][1]
    assert (key.tensorrt_version, key.compute_capability, key.precision, key.max_batch) == (
        '10.3.0', '8.7', 'fp32', 4)
    assert key.onnx_sha256 == compute_file_sha256(str(tiny_onnx))
    assert first.name == f'tiny.fp32.{key.digest()}.engine'


def test_ensure_engine_rebuilds_on_upgrade_truncation_or_force(tiny_onnx, tmp_path, fake_target,
                                                               monkeypatch):
    engine = tmp_path / 'model.engine'
    options = engine_build.EngineBuildOptions(precision='fp32')
    engine_build.ensure_engine(str(tiny_onnx), str(engine), options=options)
    engine_build.ensure_engine(str(tiny_onnx), str(engine), options=options)
    assert len(fake_target) == 1
    monkeypatch.setattr(FakeTensorRT, '__version__', '10.7.0')  # TensorRT upgraded
    engine_build.ensure_engine(str(tiny_onnx), str(engine), options=options)
    assert len(fake_target) == 2 and fake_target[1][1].tensorrt_version == '10.7.0'
    engine.write_bytes(b'trunc')  # damaged engine
    engine_build.ensure_engine(str(tiny_onnx), str(engine), options=options)
    engine_build.ensure_engine(str(tiny_onnx), str(engine), options=options, force=True)
    assert len(fake_target) == 4


def test_ensure_engine_fp16_request_on_fp32_onnx_uses_the_builder_flag(tiny_onnx, tmp_path,
                                                                       fake_target):
    options = engine_build.EngineBuildOptions(precision='fp16')
    engine_build.ensure_engine(str(tiny_onnx), cache_dir=str(tmp_path), options=options)
    assert fake_target[0][2] == PrecisionPlan(strongly_typed=False, fp16_flag=True,
                                              precision='fp16')
