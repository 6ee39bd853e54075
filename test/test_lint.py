"""ament_flake8 and ament_pep257 (Google convention) over our code, as ROS packages do."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINTED = [str(REPO / name) for name in ('affordance_grounding', 'training', 'launch', 'bench',
                                        'demo', 'harness', 'setup.py') if (REPO / name).exists()]


@pytest.mark.linter
@pytest.mark.flake8
def test_flake8_passes():
    main_with_errors = pytest.importorskip('ament_flake8.main').main_with_errors
    return_code, errors = main_with_errors(argv=LINTED + [str(REPO / 'test')])
    assert return_code == 0, f'{len(errors)} flake8 errors:\n' + '\n'.join(errors)


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257_google_convention_passes():
    main = pytest.importorskip('ament_pep257.main').main
    assert main(argv=['--convention', 'google'] + LINTED) == 0, 'see pep257 output above'
