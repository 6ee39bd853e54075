"""Real ROS graph fixtures: the node in its own process, a client in this one.

The DDS domain of the session is chosen in the root conftest (so every ROS test is isolated).
ROS is imported inside the fixtures, so this file loads on a machine without ROS too.
"""

import pytest


@pytest.fixture(scope='module')
def ros_context():
    """Yield an rclpy context of this test process, in the session's DDS domain."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


@pytest.fixture
def start_node(tmp_path):
    """Return a function that starts node processes; all are stopped afterwards."""
    from harness.node_process import NODE_MODULE, NodeProcess

    started = []

    def start(module: str = NODE_MODULE, env=None, preexec_fn=None,
              **parameters) -> NodeProcess:
        node = NodeProcess(tmp_path / f'node{len(started)}.log', parameters, module=module,
                           env=env, preexec_fn=preexec_fn)
        started.append(node)
        return node
    yield start
    for node in started:
        node.stop()


@pytest.fixture
def make_client(ros_context):
    """Return a function that creates graph clients in this process; all are closed afterwards."""
    from harness.graph_client import GraphClient

    clients = []

    def make(**kwargs) -> GraphClient:
        name = kwargs.pop('name', f'test_client_{len(clients)}')
        client = GraphClient(name=name, context=ros_context, **kwargs)
        clients.append(client)
        return client
    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope='module')
def pipeline(tiny_onnx):
    """Return a frame pipeline over the tiny model on ONNX Runtime CPU."""
    from affordance_grounding.inference.backends import OnnxRuntimeBackend
    from affordance_grounding.perception.frame_pipeline import FramePipeline

    return FramePipeline(OnnxRuntimeBackend(str(tiny_onnx), 'cpu').load())
