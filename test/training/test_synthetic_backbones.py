"""The committed synthetic-world backbones have the properties of the real ones.

config/model_synthetic.yaml: the CLIP affinity is an object-level cue (finds the object, not
which part acts), the DINO saliency finds the object and the DINO keys cluster into parts.
Numbers are from nine rendered test images (one per affordance-object pair, seed 0); the
full-size figures and the targets are in docs/ablation.md.
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


def test_clip_affinity_finds_the_object_not_the_acting_part(probes):
    """Object pixels outscore the background; the acting part does not outscore its object."""
    pretrained, random = probes['pretrained'], probes['random']
    assert pretrained['object_auc'] > 0.85
    assert pretrained['object_auc'] > random['object_auc'] + 0.2
    assert pretrained['part_auc'] < 0.7


def test_dino_saliency_overlaps_the_object_more_than_random_weights(probes):
    """The saliency overlaps the object at least as much as real DINO's (0.605 on 90 images)."""
    assert probes['pretrained']['saliency_iou'] > 0.4
    assert probes['pretrained']['saliency_iou'] > probes['random']['saliency_iou'] + 0.2


def test_dino_key_clusters_follow_parts_better_than_position_alone(probes):
    """k-means on the keys matches parts better than clustering patch coordinates.

    In the v3 world (objects filling the frame) position alone already separates parts
    better than in v2: 0.659 against 0.585 on 90 images, 0.634 against 0.585 on these nine
    (v2 backbones and world: 0.612 against 0.521). The margin is half the nine-image gap, as
    the v2 margin was. They do not beat random keys, see docs/ablation.md.
    """
    assert probes['pretrained']['part_iou'] > probes['spatial']['part_iou'] + 0.025
