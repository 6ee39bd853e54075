"""open_clip's "No pretrained weights loaded" notice is replaced by what is really loaded.

The checks capture both log records and warnings themselves (``warnings.simplefilter``), so
they do not depend on the ``filterwarnings`` line of pytest.ini.
"""

import logging
import warnings

from affordance_grounding.model.checkpoint import load_grounder, save_bundle
from affordance_grounding.model.factory import build_grounder

NOTICE = 'No pretrained weights loaded'


def loaded_lines(caplog):
    """Return the backbone log lines and whether open_clip's notice got through."""
    messages = [record.getMessage() for record in caplog.records]
    return ([m for m in messages if m.startswith(('CLIP ', 'DINO '))],
            any(NOTICE in m for m in messages))


def test_random_test_config_says_random_and_drops_the_notice(tiny_config, caplog):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter('always')
        build_grounder(tiny_config)
    lines, notice = loaded_lines(caplog)
    assert not notice and not any(NOTICE in str(w.message) for w in caught)
    assert lines == ['CLIP ViT-B-16-quickgelu: random weights (clip_weights is null)',
                     'DINO vit_small_patch16_224: random weights (dino_weights is null)']


def test_bundle_says_its_weights_come_from_the_bundle(tiny_grounder, tmp_path, caplog):
    path = save_bundle(str(tmp_path / 'tiny.pt'), tiny_grounder)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter('always')
        load_grounder(str(path))
    lines, notice = loaded_lines(caplog)
    assert not notice and not any(NOTICE in str(w.message) for w in caught)
    assert lines == ['CLIP ViT-B-16-quickgelu: weights from the bundle',
                     'DINO vit_small_patch16_224: weights from the bundle']


def test_other_root_warnings_still_pass(tiny_config, caplog):
    import open_clip

    with caplog.at_level(logging.INFO):
        open_clip.create_model('ViT-B-16-quickgelu', pretrained=None,
                               **tiny_config.clip_overrides)  # outside our loader
    assert any(NOTICE in record.getMessage() for record in caplog.records)
