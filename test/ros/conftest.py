"""Real ROS graph fixtures: the node in its own process, a client in this one.

Every test session gets its own DDS domain (and localhost-only discovery) so that parallel
sessions on one machine never see each other's nodes.
"""

import os

from harness.graph_client import GraphClient
from harness.node_process import NodeProcess
import pytest
import rclpy

os.environ['ROS_DOMAIN_ID'] = str(20 + os.getpid() % 200)  # valid ids are 0..232
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'


@pytest.fixture(scope='module')
def ros_context():
    """Yield an rclpy context of this test process, in the session's DDS domain."""
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


@pytest.fixture
def start_node(tmp_path):
    """Return a function that starts node processes; all are stopped afterwards."""
    started = []

    def start(**parameters) -> NodeProcess:
        node = NodeProcess(tmp_path / f'node{len(started)}.log', parameters)
        started.append(node)
        return node
    yield start
    for node in started:
        node.stop()


@pytest.fixture
def make_client(ros_context):
    """Return a function that creates graph clients in this process; all are closed afterwards."""
    clients = []

    def make(**kwargs) -> GraphClient:
        name = kwargs.pop('name', f'test_client_{len(clients)}')
        client = GraphClient(name=name, context=ros_context, **kwargs)
        clients.append(client)
        return client
    yield make
    for client in clients:
        client.close()
