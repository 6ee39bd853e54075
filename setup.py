"""Install the runtime package (training/ stays a checkout-only tool)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'affordance_grounding'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*']),
    package_data={PACKAGE: ['data/*.yaml']},  # the action synonym table (vocabulary.py)
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.xml')),
        (f'share/{PACKAGE}/rviz', glob('rviz/*.rviz')),
    ],
    install_requires=['setuptools'],
    extras_require={
        'runtime': ['torch', 'open_clip_torch', 'timm', 'numpy', 'opencv-python-headless',
                    'PyYAML', 'onnxruntime', 'rosbags', 'tqdm'],
        'tensorrt': ['tensorrt'],
        'test': ['pytest'],
    },
    zip_safe=True,
    maintainer='affordance_grounding maintainers',
    maintainer_email='maintainers@affordance-grounding.invalid',
    description='Weakly supervised affordance grounding (SelectiveCL) for ROS 2',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'affordance_predict = affordance_grounding.predict:main',
            'affordance_import_official = affordance_grounding.import_official:main',
            'build_engine = affordance_grounding.inference.engine_build:main',
            'affordance_node = affordance_grounding.ros.node:main',
            'affordance_bag = affordance_grounding.bag.cli:main',
        ],
    },
)
