"""Backbone weight sources: clear, fast errors offline, and loading from local files.

The hub cases run in a subprocess with ``HF_HUB_OFFLINE=1`` and an empty ``HF_HOME``, so a hub
cache on the developer's machine cannot turn the error case into a 600 MB load, and a hang
shows up as a timeout instead of a stuck test run.
"""

import dataclasses
import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap

from affordance_grounding.model.backbones import load_clip_model, load_dino_model
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
MAX_SECONDS_PER_LOAD = 60.0
SCRIPT = textwrap.dedent("""
    import json, sys, time
    from affordance_grounding.config import ModelConfig
    from affordance_grounding.model.backbones import load_clip_model, load_dino_model
    missing = sys.argv[1]
    cases = {
        'clip_hub': (load_clip_model, ModelConfig()),
        'dino_hub': (load_dino_model, ModelConfig()),
        'clip_path': (load_clip_model, ModelConfig(clip_weights=missing + '/clip.bin')),
        'dino_path': (load_dino_model, ModelConfig(dino_weights=missing + '/dino.pth')),
    }
    results = {}
    for name, (load, config) in cases.items():
        start = time.monotonic()
        try:
            load(config)
            results[name] = {'type': None, 'message': '', 'seconds': 0.0}
        except Exception as error:
            results[name] = {'type': type(error).__name__, 'message': str(error),
                             'seconds': time.monotonic() - start}
    print('RESULT ' + json.dumps(results))
""")


@pytest.fixture(scope='module')
def offline_results(tmp_path_factory):
    """Run every loader case once, offline, and return {case: {type, message, seconds}}."""
    folder = tmp_path_factory.mktemp('offline')
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_HOME=str(folder / 'hf'),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
    try:
        result = subprocess.run([sys.executable, '-c', SCRIPT, str(folder / 'missing')],
                                cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=4 * MAX_SECONDS_PER_LOAD + 60)
    except subprocess.TimeoutExpired:
        pytest.fail('loading weights with HF_HUB_OFFLINE=1 did not fail within seconds')
    lines = [line for line in result.stdout.splitlines() if line.startswith('RESULT ')]
    assert lines, result.stdout + result.stderr
    return json.loads(lines[-1][len('RESULT '):])


def test_load_clip_model_offline_names_hub_repo_and_fix(offline_results):
    case = offline_results['clip_hub']
    assert case['type'] == 'WeightsUnavailableError'
    assert 'timm/vit_base_patch16_clip_224.openai' in case['message']
    assert 'set clip_weights to its path' in case['message']
    assert case['seconds'] < MAX_SECONDS_PER_LOAD


def test_load_dino_model_offline_names_hub_repo_and_fix(offline_results):
    case = offline_results['dino_hub']
    assert case['type'] == 'WeightsUnavailableError'
    assert 'timm/vit_small_patch16_224.dino' in case['message']
    assert 'set dino_weights to its path' in case['message']
    assert case['seconds'] < MAX_SECONDS_PER_LOAD


@pytest.mark.parametrize('case, file_name', [
    ('clip_path', 'clip.bin'),
    ('dino_path', 'dino.pth'),
])
def test_load_backbone_missing_local_file_names_path(offline_results, case, file_name):
    result = offline_results[case]
    assert result['type'] == 'FileNotFoundError'
    assert f'missing/{file_name}' in result['message']
    assert result['seconds'] < 5.0


def _shift_parameters_(module, amount):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(amount)
    return module


def test_load_backbones_from_local_files(tiny_config, tmp_path):
    torch.manual_seed(3)
    clip = _shift_parameters_(load_clip_model(tiny_config), 0.1)
    vit = _shift_parameters_(load_dino_model(tiny_config), 0.2)
    torch.save(clip.state_dict(), tmp_path / 'clip.bin')
    torch.save(vit.state_dict(), tmp_path / 'dino.pth')
    config = dataclasses.replace(tiny_config, clip_weights=str(tmp_path / 'clip.bin'),
                                 dino_weights=str(tmp_path / 'dino.pth'))
    loaded_clip = load_clip_model(config)
    loaded_vit = load_dino_model(config)
    for expected, loaded in ((clip, loaded_clip), (vit, loaded_vit)):
        state = loaded.state_dict()
        assert set(state) == set(expected.state_dict())
        for key, value in expected.state_dict().items():
            assert torch.equal(state[key], value), key
    assert not loaded_clip.training and not loaded_vit.training


@pytest.mark.parametrize('weights', ['opeani', 'clip.ckpt'])
def test_load_clip_model_unknown_tag_or_missing_file_says_so(tiny_config, weights):
    config = dataclasses.replace(tiny_config, clip_model='ViT-B-16-quickgelu',
                                 clip_weights=weights)
    with pytest.raises(FileNotFoundError) as caught:
        load_clip_model(config)
    message = str(caught.value)
    assert weights in message
    assert 'neither an existing file nor a pretrained tag' in message
    assert 'openai' in message  # the valid tags are listed
