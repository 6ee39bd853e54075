"""Launch the affordance grounding node (and optionally RViz).

    ros2 launch affordance_grounding node.launch.py image_topic:=/camera/color/image_raw

The node is a lifecycle node that configures and activates itself (``autostart``), so no
lifecycle manager is needed. Parameter arguments left empty keep the params file's value; only
the ones given on the command line override it. The node gets the shipped FastDDS profile for
large images (``fastdds_profile``) unless the environment already names one.
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
    ('roi_source', '', 'none | roi | detections: object regions (empty: the params file)'),
    ('detections_topic', 'detections', "a detector's vision_msgs/Detection2DArray, e.g. "
     '/detector/detections (with roi_source:=detections)'),
    ('roi_topic', 'roi', 'sensor_msgs/RegionOfInterest of the colour image (with '
     'roi_source:=roi)'),
    ('backend', '', 'auto | tensorrt | onnxruntime | torch (empty: the params file)'),
    ('model_path', '', 'engine, ONNX or checkpoint file (empty: the params file)'),
    ('device', '', 'inference device: cuda, cuda:N, cpu or auto (empty: the params file)'),
    ('enable_3d', '', 'true | false: 3D grasp points from depth + camera_info (empty: the '
     'params file)'),
    ('image_transport', '', 'raw | compressed (subscribe <image_topic>/compressed); empty: '
     'the params file'),
    ('cameras', '', 'comma-separated camera names, e.g. head,wrist: one node, one batched '
     'inference, topics under <namespace>/<camera>/ (the *_topic remappings then do not '
     'apply); empty: the params file'),
    ('rviz', 'false', 'start RViz with the shipped configuration'),
    ('use_sim_time', '', 'true | false: use /clock, e.g. for ros2 bag play --clock (empty: '
     'the params file, else false)'),
    ('fastdds_profile', '', 'FastDDS XML profile of the node: a path, "none", or empty for '
     "the environment's FASTRTPS_DEFAULT_PROFILES_FILE, else the shipped "
     'config/fastdds_large_images.xml'),
    ('log_level', 'info', 'node log level'),
)
# Launch argument -> parameter type; an empty argument is "not given" and overrides nothing.
PARAMETER_ARGUMENTS = {'backend': str, 'model_path': str, 'device': str, 'enable_3d': bool,
                       'image_transport': str, 'cameras': list, 'use_sim_time': bool,
                       'roi_source': str}
PROFILE_ENV_VARS = ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE')


def build_overrides(values: dict) -> dict:
    """Parameters given on the command line; empty values keep the params-file setting."""
    overrides = {}
    for name, kind in PARAMETER_ARGUMENTS.items():
        value = values[name].strip()
        if not value:
            continue
        if kind is bool:
            if value.lower() not in ('true', 'false'):
                raise ValueError(f'launch argument {name}:={value} must be true or false')
            overrides[name] = value.lower() == 'true'
        elif kind is list:
            overrides[name] = [item.strip() for item in value.split(',') if item.strip()]
        else:
            overrides[name] = value
    return overrides


def build_environment(profile_argument: str, share: str, environment: dict) -> dict:
    """Environment variables that give the node its FastDDS profile (see the argument).

    Fast DDS 2 (Jazzy) reads FASTRTPS_DEFAULT_PROFILES_FILE, Fast DDS 3 the FASTDDS_ name; both
    are set. The profile sets transports only, so topic QoS still comes from the node's code
    (unless RMW_FASTRTPS_USE_QOS_FROM_XML=1 is set, which this file leaves alone).
    """
    if profile_argument.lower() == 'none':
        return dict.fromkeys(PROFILE_ENV_VARS, '')
    if profile_argument:
        path = profile_argument
    else:
        inherited = [environment[name] for name in PROFILE_ENV_VARS if environment.get(name)]
        if inherited:
            return {}  # the robot's own profile, applied to every process alike
        path = os.path.join(share, 'config', 'fastdds_large_images.xml')
    return dict.fromkeys(PROFILE_ENV_VARS, path)


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
        additional_env=build_environment(values['fastdds_profile'], share, dict(os.environ)),
        remappings=[
            ('image', values['image_topic']),
            ('camera_info', values['camera_info_topic']),
            ('depth', values['depth_topic']),
            ('action', values['action_topic']),
            ('detections', values['detections_topic']),
            ('roi', values['roi_topic']),
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
