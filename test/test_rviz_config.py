"""The shipped RViz config shows every output the node publishes with 3D on."""

from pathlib import Path

import yaml

RVIZ = Path(__file__).resolve().parents[1] / 'rviz' / 'affordance.rviz'


def displays_by_topic():
    config = yaml.safe_load(RVIZ.read_text())
    return {display['Topic']['Value']: display
            for display in config['Visualization Manager']['Displays'] if 'Topic' in display}


def test_rviz_shows_the_cloud_coloured_by_intensity_and_the_grasp_pose():
    displays = displays_by_topic()
    cloud = displays['/affordance/affordance_cloud']
    assert cloud['Class'] == 'rviz_default_plugins/PointCloud2'
    assert cloud['Color Transformer'] == 'Intensity' and cloud['Channel Name'] == 'intensity'
    assert (cloud['Min Intensity'], cloud['Max Intensity']) == (0, 1)  # the heatmap's range
    assert displays['/affordance/grasp_pose']['Class'] == 'rviz_default_plugins/Pose'
    assert displays['/affordance/markers']['Class'] == 'rviz_default_plugins/MarkerArray'
