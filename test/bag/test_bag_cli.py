"""The affordance_bag command: success output, one-line user errors, no ROS needed."""

import os
from pathlib import Path
import subprocess
import sys

from affordance_grounding.bag.cli import EXIT_NOTHING_WRITTEN, main
from bench.bag_recording import IMAGE_TOPIC, RecordingSpec, write_recording
import cv2
import pytest

REPO = Path(__file__).resolve().parents[2]
ROS_PACKAGES = ('rclpy', 'std_msgs', 'sensor_msgs', 'geometry_msgs', 'visualization_msgs',
                'diagnostic_msgs', 'builtin_interfaces', 'cv_bridge', 'rosidl_runtime_py')
# Runs the command in a fresh interpreter where importing any ROS package fails.
NO_ROS_RUNNER = f"""
import importlib.abc, sys
class NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {ROS_PACKAGES!r}:
            raise ImportError('ROS is not installed (test)')
sys.meta_path.insert(0, NoRos())
from affordance_grounding.bag.cli import EXIT_NOTHING_WRITTEN, main
status = main(sys.argv[1:])
assert not [name for name in sys.modules if name.split('.')[0] in {ROS_PACKAGES!r}]
raise SystemExit(status)
"""


@pytest.fixture(scope='module')
def recording(tmp_path_factory):
    """Return a 4-frame mcap recording with 'hold' commanded from the start."""
    path = tmp_path_factory.mktemp('cli') / 'recording'
    write_recording(path, RecordingSpec(frames=4))
    return path


def run_cli(capsys, *argv):
    """Run main(); return (status, stdout, stderr)."""
    status = main([str(arg) for arg in argv] + ['--no-progress'])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status, err, *fragments):
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err
    for fragment in fragments:
        assert fragment in err


@pytest.mark.slow  # an end-to-end run: make test runs it, make test-fast does not
def test_bag_cli_writes_bag_pngs_and_video(tmp_path, capsys, recording, tiny_onnx):
    out, png_dir, video = tmp_path / 'out', tmp_path / 'png', tmp_path / 'overlays.mp4'
    status, stdout, err = run_cli(capsys, recording, '--out', out, '--model', tiny_onnx,
                                  '--device', 'auto', '--batch', '3', '--png-dir', png_dir,
                                  '--video', video, '--storage', 'sqlite3')
    assert status == 0, err
    assert 'frames in: 4, frames out: 4, skipped: 0' in stdout
    assert (out / 'out.db3').is_file()
    assert sorted(path.name for path in png_dir.iterdir()) == [f'{i:06d}.png' for i in range(4)]
    capture = cv2.VideoCapture(str(video))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()
    assert sorted(path.name for path in tmp_path.iterdir()) == ['out', 'overlays.mp4', 'png']


def test_bag_cli_default_output_name_and_existing_output(tmp_path, capsys, tiny_onnx):
    source = tmp_path / 'walk'
    write_recording(source, RecordingSpec(frames=2))
    status, _, err = run_cli(capsys, source, '--model', tiny_onnx)
    assert status == 0, err
    assert (tmp_path / 'walk_affordance' / 'metadata.yaml').is_file()
    status, _, err = run_cli(capsys, source, '--model', tiny_onnx)
    assert_one_line_error(status, err, 'walk_affordance exists', '--overwrite')
    status, _, err = run_cli(capsys, source, '--model', tiny_onnx, '--overwrite')
    assert status == 0, err


def test_bag_cli_missing_topic_lists_the_bags_topics(tmp_path, capsys, recording, tiny_onnx):
    status, _, err = run_cli(capsys, recording, '--out', tmp_path / 'out', '--model', tiny_onnx,
                             '--image-topic', '/camera/rgb')
    assert_one_line_error(status, err, 'no topic /camera/rgb',
                          f'{IMAGE_TOPIC} (sensor_msgs/msg/Image)',
                          '/affordance/action (std_msgs/msg/String)')
    status, _, err = run_cli(capsys, recording, '--out', tmp_path / 'out', '--model', tiny_onnx,
                             '--image-topic', '/affordance/action')
    assert_one_line_error(status, err, '/affordance/action is std_msgs/msg/String')
    assert not (tmp_path / 'out').exists()


def test_bag_cli_corrupt_and_missing_bags(tmp_path, capsys, tiny_onnx):
    corrupt = tmp_path / 'broken.mcap'
    corrupt.write_bytes(os.urandom(4096))
    status, _, err = run_cli(capsys, corrupt, '--model', tiny_onnx)
    assert_one_line_error(status, err, 'cannot read', 'broken.mcap')
    truncated = tmp_path / 'truncated'
    write_recording(truncated, RecordingSpec(frames=2))
    data_file = truncated / 'truncated.mcap'
    data_file.write_bytes(data_file.read_bytes()[:300])
    status, _, err = run_cli(capsys, truncated, '--model', tiny_onnx)
    assert_one_line_error(status, err, 'cannot read')
    status, _, err = run_cli(capsys, tmp_path / 'nowhere', '--model', tiny_onnx)
    assert_one_line_error(status, err, 'does not exist')
    (tmp_path / 'bad_metadata').mkdir()
    (tmp_path / 'bad_metadata' / 'metadata.yaml').write_text('rosbag2_bagfile_information: [\n')
    (tmp_path / 'empty').mkdir()
    for name in ('bad_metadata', 'empty'):
        status, _, err = run_cli(capsys, tmp_path / name, '--model', tiny_onnx)
        assert_one_line_error(status, err, f'cannot read {tmp_path / name}')
    damaged = tmp_path / 'damaged'  # sqlite finds the damage only when it reads that page
    write_recording(damaged, RecordingSpec(frames=20, storage='sqlite3'))
    data = bytearray((damaged / 'damaged.db3').read_bytes())
    data[len(data) // 2:len(data) // 2 + 2000] = bytes(2000)
    (damaged / 'damaged.db3').write_bytes(bytes(data))
    status, _, err = run_cli(capsys, damaged, '--model', tiny_onnx)
    assert_one_line_error(status, err, 'damaged is damaged after')
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == ['bad_metadata', 'broken.mcap', 'damaged', 'empty', 'truncated']


def test_bag_cli_unknown_action_and_bad_model(tmp_path, capsys, recording, tiny_onnx):
    status, _, err = run_cli(capsys, recording, '--out', tmp_path / 'out', '--model', tiny_onnx,
                             '--action', 'juggle')
    assert_one_line_error(status, err, "unknown action 'juggle'", 'hold')
    status, _, err = run_cli(capsys, recording, '--out', tmp_path / 'out', '--model',
                             tmp_path / 'missing.onnx')
    assert_one_line_error(status, err, 'missing.onnx')
    assert not (tmp_path / 'out').exists()


def test_bag_cli_runs_without_ros(tmp_path, recording, tiny_onnx):
    out = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, '-c', NO_ROS_RUNNER, str(recording), '--out', str(out), '--model',
         str(tiny_onnx), '--no-progress'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'frames out: 4' in result.stdout


def test_bag_module_entry_point_prints_usage(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'affordance_grounding.bag', '--help'],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and '--image-topic' in result.stdout


def test_bag_cli_interrupt_is_one_line(tmp_path, capsys, monkeypatch, recording):
    def interrupted(job):
        raise KeyboardInterrupt

    monkeypatch.setattr('affordance_grounding.bag.cli.run_bag', interrupted)
    status, _, err = run_cli(capsys, recording, '--out', tmp_path / 'out', '--model', 'x.onnx')
    assert status == 130 and err.strip() == (
        f'affordance_bag: interrupted; nothing was written to {tmp_path / "out"}')


def test_bag_cli_internal_error_is_one_line(tmp_path, capsys, monkeypatch, recording):
    def broken(job):
        raise RuntimeError('device lost')

    monkeypatch.setattr('affordance_grounding.bag.cli.run_bag', broken)
    status, _, err = run_cli(capsys, recording, '--out', tmp_path / 'out', '--model', 'x.onnx')
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert "RuntimeError('device lost')" in err and '--verbose' in err


def test_bag_cli_with_nothing_written_says_what_to_pass_and_exits_3(tmp_path, capsys, tiny_onnx):
    no_actions, empty = tmp_path / 'no_actions', tmp_path / 'empty_bag'
    write_recording(no_actions, RecordingSpec(frames=3, actions=()))
    write_recording(empty, RecordingSpec(frames=0, actions=()))
    for bag, hint in ((no_actions, '3 of 3 frames had no action: pass one with --action'),
                      (empty, 'the image topic has no messages; check --image-topic')):
        status, out, err = run_cli(capsys, bag, '--out', tmp_path / f'{bag.name}_out',
                                   '--model', tiny_onnx, '--image-topic', IMAGE_TOPIC)
        assert status == EXIT_NOTHING_WRITTEN == 3, err
        assert 'frames out: 0' in out
        errors = [line for line in err.splitlines() if 'error:' in line]
        assert len(errors) == 1 and 'Traceback' not in err
        assert errors[0].startswith('affordance_bag: error: no frame was written: ')
        assert hint in errors[0]
    status, out, _ = run_cli(capsys, no_actions, '--out', tmp_path / 'fixed', '--model',
                             tiny_onnx, '--action', 'grab')  # the node's synonym, accepted
    assert status == 0 and 'frames out: 3' in out


def test_bag_cli_help_has_no_rest_markup(capsys):
    with pytest.raises(SystemExit) as stop:
        main(['--help'])
    assert stop.value.code == 0
    help_text = capsys.readouterr().out
    assert 'affordance_bag: run the affordance model' in help_text and '``' not in help_text
