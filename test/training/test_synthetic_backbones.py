"""The committed synthetic-world backbones do their job (config/model_synthetic.yaml).

Numbers are from nine rendered test images (one per affordance-object pair, seed 0); the
full-size figures are in docs/ablation.md.
"""

from pathlib import Path

from affordance_grounding.config import load_model_config
import pytest
from training.pretrain.probe import (
    patch_coordinates, probe_backbones, probe_clusters, render_probe_images)

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC_CONFIG = REPO / 'config' / 'model_synthetic.yaml'
TINY_CONFIG = REPO / 'config' / 'model_tiny.yaml'


@pytest.fixture(scope='module')
def probes(monkeypatch_module_cwd):
    """Probe results of the committed backbones, the random tiny ones and the spatial control."""
    data = render_probe_images(per_pair=1, seed=0)
    grid = data.images.shape[-1] // 16
    return {
        'pretrained': probe_backbones(load_model_config(str(SYNTHETIC_CONFIG)), data),
        'random': probe_backbones(load_model_config(str(TINY_CONFIG)), data),
        'spatial': probe_clusters(patch_coordinates(len(data.labels), grid), data.patch_parts,
                                  data.part_counts),
    }


@pytest.fixture(scope='module')
def monkeypatch_module_cwd():
    """Run from the repository root: the model config names its weights relative to it."""
    patcher = pytest.MonkeyPatch()
    patcher.chdir(REPO)
    yield
    patcher.undo()


def test_clip_affinity_peaks_on_the_acting_part(probes):
    """The action prompt's affinity is far higher inside the GT part than outside."""
    pretrained, random = probes['pretrained'], probes['random']
    assert pretrained['affinity_inside'] - pretrained['affinity_outside'] > 0.3
    assert pretrained['affinity_auc'] > 0.9
    assert pretrained['affinity_auc'] > random['affinity_auc'] + 0.3
    assert pretrained['affinity_peak_in_gt'] > random['affinity_peak_in_gt'] + 0.3


def test_dino_key_clusters_follow_parts_better_than_random_keys(probes):
    """k-means on the keys matches parts better than random keys and than position alone."""
    pretrained = probes['pretrained']
    assert pretrained['part_iou'] > probes['random']['part_iou']
    assert pretrained['part_iou'] > probes['spatial']['part_iou'] + 0.1
