"""Read and check exported ONNX graphs: safe loading, metadata, TensorRT constraints.

Used by the exporter (every export is checked) and by the engine builder (before handing the
graph to TensorRT), so a bad file fails here with its name and the fix, not deep in a parser.
"""

from typing import List

from affordance_grounding.inference.io_spec import (
    INPUT_NAME, MISSING_ONNX_HINT, MODEL_FORMAT, ModelFileError, ModelMetadata, ONNX_OPSET,
    OUTPUT_NAMES, REEXPORT_HINT, require_file)

# Ops TensorRT 10.3 (JetPack 6) cannot parse, and attention ops of other exporters.
UNSUPPORTED_OPS = frozenset({'Attention', 'MultiHeadAttention', 'GroupQueryAttention'})
DEFAULT_DOMAINS = ('', 'ai.onnx')


def load_onnx_model(path: str):
    """Load an ONNX file with its weights, turning parser errors into one clear error.

    Args:
        path: ``.onnx`` file written by the exporter (weights inside, no side file).

    Returns:
        The ``onnx.ModelProto``.

    Raises:
        ModelFileError: If the file is missing, empty, truncated or not ONNX.
    """
    import onnx

    file_path = require_file(path, 'ONNX model', MISSING_ONNX_HINT)
    try:
        model = onnx.load(str(file_path))
    except Exception as error:  # protobuf DecodeError, OSError for missing external data ...
        raise ModelFileError(
            f'cannot read ONNX model {file_path} ({type(error).__name__}: {error}); the file is '
            f'truncated, corrupt or not ONNX: {REEXPORT_HINT}') from error
    if not model.graph.node:
        raise ModelFileError(f'ONNX model {file_path} has an empty graph (truncated?); '
                             f'{REEXPORT_HINT}')
    return model


def read_onnx_metadata(model, source: str) -> ModelMetadata:
    """Return the :class:`ModelMetadata` stored in an ONNX model's ``metadata_props``."""
    props = {entry.key: entry.value for entry in model.metadata_props}
    return ModelMetadata.from_props(props, source)


def write_onnx_metadata(model, metadata: ModelMetadata) -> None:
    """Replace our keys in ``model.metadata_props`` with ``metadata`` (in place)."""
    props = metadata.to_props()
    kept = [(entry.key, entry.value) for entry in model.metadata_props if entry.key not in props]
    del model.metadata_props[:]
    for key, value in kept + sorted(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def default_opset(model) -> int:
    """Return the version of the default ONNX operator set the model imports."""
    versions = [entry.version for entry in model.opset_import if entry.domain in DEFAULT_DOMAINS]
    return max(versions) if versions else 0


def find_tensorrt_problems(model, max_opset: int = ONNX_OPSET) -> List[str]:
    """List what would stop TensorRT 10.3 (the oldest target, JetPack 6) parsing the graph.

    Checks the default opset (<= ``max_opset``), attention ops, operators of other domains
    and local functions (none expected: the exporter inlines everything).

    Returns:
        Human-readable problems; empty when the graph fits.
    """
    problems = []
    opset = default_opset(model)
    if opset > max_opset:
        problems.append(f'opset {opset} > {max_opset} (attention becomes an Attention op '
                        f'from opset 23 on)')
    op_types = {node.op_type for node in model.graph.node}
    for op_type in sorted(op_types & UNSUPPORTED_OPS):
        problems.append(f'unsupported op {op_type}')
    domains = sorted({node.domain for node in model.graph.node} - set(DEFAULT_DOMAINS))
    if domains:
        problems.append(f'operators from custom domains {domains}')
    if len(model.functions):
        problems.append(f'{len(model.functions)} local functions (expected an inlined graph)')
    return problems


def find_interface_problems(model, metadata: ModelMetadata) -> List[str]:
    """Compare the graph's inputs/outputs with the shared names and the metadata's shapes.

    Expected: input ``image`` (batch, 3, S, S); outputs ``affordance`` (batch, K, S, S),
    ``cam`` and ``affinity`` (batch, K, G, G); float32 everywhere; batch symbolic (dynamic),
    every other dimension a constant (TensorRT needs a fixed output size).

    Returns:
        Human-readable problems; empty when the interface matches.
    """
    import onnx

    size, grid, classes = metadata.image_size, metadata.grid_size, len(metadata.labels)
    expected = {INPUT_NAME: (3, size, size), OUTPUT_NAMES[0]: (classes, size, size),
                OUTPUT_NAMES[1]: (classes, grid, grid), OUTPUT_NAMES[2]: (classes, grid, grid)}
    problems = []
    inputs = [value.name for value in model.graph.input]
    outputs = [value.name for value in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
        problems.append(f'tensor names {inputs} -> {outputs}, expected [{INPUT_NAME!r}] -> '
                        f'{list(OUTPUT_NAMES)}')
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name not in expected:
            continue
        tensor_type = value.type.tensor_type
        dims = [dim.dim_value if dim.HasField('dim_value') else dim.dim_param
                for dim in tensor_type.shape.dim]
        if tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f'{value.name} has element type '
                            f'{onnx.TensorProto.DataType.Name(tensor_type.elem_type)}, '
                            f'expected FLOAT')
        if not dims or not isinstance(dims[0], str) or tuple(dims[1:]) != expected[value.name]:
            problems.append(f'{value.name} has shape {dims}, expected [batch (dynamic), '
                            f'{", ".join(str(d) for d in expected[value.name])}]')
    return problems


def is_fp16_typed(model) -> bool:
    """Return True when the graph stores float16 weights (an FP16-typed graph)."""
    import onnx

    return any(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in model.graph.initializer)


def inspect_onnx_file(path: str, check_tensorrt: bool = True) -> ModelMetadata:
    """Load an exported ONNX file, check it and return its metadata.

    Raises:
        ModelFileError: If the file is unreadable, lacks our metadata, has another interface,
            or (with ``check_tensorrt``) breaks a TensorRT constraint.
    """
    model = load_onnx_model(path)
    metadata = read_onnx_metadata(model, str(path))
    problems = find_interface_problems(model, metadata)
    if check_tensorrt:
        problems += find_tensorrt_problems(model)
    if problems:
        raise ModelFileError(f'{path} does not fit the {MODEL_FORMAT} interface: '
                             f'{"; ".join(problems)}; {REEXPORT_HINT}')
    return metadata
