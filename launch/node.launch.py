"""Launch the affordance grounding node (and optionally RViz).

    ros2 launch affordance_grounding node.launch.py image_topic:=/camera/color/image_raw

The node is a lifecycle node that configures and activates itself (``autostart``), so no
lifecycle manager is needed.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = 'affordance_grounding'

# (name, default, description); the order is the order `ros2 launch -s` shows them in.
LAUNCH_ARGUMENTS = (
    ('namespace', 'affordance', 'namespace of the node and its relative topics'),
    ('params_file', '', 'parameter file (default: the installed config/params.yaml)'),
    ('image_topic', '/camera/color/image_raw', 'input color image topic'),
    ('camera_info_topic', '/camera/color/camera_info', 'camera info of the color image'),
    ('depth_topic', '/camera/aligned_depth_to_color/image_raw', 'color-aligned depth topic'),
    ('action_topic', '/affordance/action', 'std_msgs/String action commands'),
    ('backend', 'auto', 'auto | tensorrt | onnxruntime | torch'),
    ('model_path', '', 'engine, ONNX or checkpoint file (overrides the params file)'),
    ('device', 'cuda', 'inference device (cuda, cuda:N or cpu)'),
    ('enable_3d', 'false', 'publish 3D grasp points from depth + camera_info'),
    ('rviz', 'false', 'start RViz with the shipped configuration'),
    ('use_sim_time', 'false', 'use /clock'),
    ('log_level', 'info', 'node log level'),
)


def build_overrides(values: dict) -> dict:
    """Parameters given on the command line; empty values keep the params-file setting."""
    overrides = {'backend': values['backend'], 'device': values['device'],
                 'enable_3d': values['enable_3d'].lower() == 'true',
                 'use_sim_time': values['use_sim_time'].lower() == 'true'}
    if values['model_path']:
        overrides['model_path'] = values['model_path']
    return overrides


def launch_setup(context, *args, **kwargs):
    """Resolve the arguments and create the node and RViz actions."""
    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in LAUNCH_ARGUMENTS}
    share = get_package_share_directory(PACKAGE)
    params_file = values['params_file'] or os.path.join(share, 'config', 'params.yaml')
    node = LifecycleNode(
        package=PACKAGE,
        executable='affordance_node',
        name='affordance_grounding',
        namespace=values['namespace'],
        output='screen',
        parameters=[params_file, build_overrides(values)],
        remappings=[
            ('image', values['image_topic']),
            ('camera_info', values['camera_info_topic']),
            ('depth', values['depth_topic']),
            ('action', values['action_topic']),
        ],
        arguments=['--ros-args', '--log-level', values['log_level']],
    )
    actions = [node]
    if values['rviz'].lower() == 'true':
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2', output='log',
                            arguments=['-d', os.path.join(share, 'rviz', 'affordance.rviz')]))
    return actions


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the node is created once they are resolved."""
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, default, text in LAUNCH_ARGUMENTS]
    return LaunchDescription([*arguments, OpaqueFunction(function=launch_setup)])
