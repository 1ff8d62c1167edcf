"""Exporting the frozen base model to ONNX, and quantizing the export.

The graph is exported from the bundled weights (``torch.onnx.export`` of the
transformer with mean pooling and L2 normalization inside the graph), never
downloaded; exports are cached per base-model fingerprint and written atomically
(temporary file, then rename), so concurrent processes at worst export twice and
never read half a file. The variants and why each exists are in ``onnx_encoder``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..errors import ModelLoadError
from .onnx_common import (
    INPUT_NAMES,
    OPSET,
    OUTPUT_NAME,
    VARIANTS,
    Variant,
    onnx_file,
    onnxruntime_module,
    pad,
    read_max_length,
    tokenizer_for,
)

# int8-rowwise smoothing statistics come from these many random-vocabulary texts.
CALIBRATION_TEXTS: Final = 256
CALIBRATION_SEED: Final = 0

# One export at a time per process; re-entrant because int8 exports first need fp32.
_export_lock = threading.RLock()


def export_onnx(model_dir: Path, variant: Variant, cache_dir: Path) -> Path:
    """The cached graph of ``variant``, exporting (and quantizing) it first if missing.

    ``cache_dir`` must be specific to the weights in ``model_dir`` (the default
    one is named after their fingerprint): a cached file is reused as is.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown ONNX variant {variant!r}; expected one of {VARIANTS}")
    path = onnx_file(cache_dir, variant)
    if path.is_file():
        return path
    with _export_lock:
        if path.is_file():  # exported by another thread meanwhile
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if variant == "fp32":
                _write_atomically(path, lambda tmp: _export_fp32(Path(model_dir), tmp))
            else:
                fp32 = export_onnx(model_dir, "fp32", cache_dir)
                if variant == "int8":
                    _write_atomically(path, lambda tmp: _quantize_dynamic(fp32, tmp))
                else:
                    _write_atomically(path, lambda tmp: _quantize_rowwise(fp32, tmp, model_dir))
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot export the {variant} ONNX graph: {exc}") from exc
    return path


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write`` on a temporary file next to ``path``, then rename it into place."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp's 0600 would keep a shared cache from other users
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _check_head(model_dir: Path) -> None:
    """The export hard-codes mean pooling + normalization: refuse a model with another head."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        pooling = json.loads(next(model_dir.glob("*_Pooling/config.json")).read_text())
    except (OSError, StopIteration, ValueError) as exc:
        raise ModelLoadError(f"cannot read the sentence-transformers head of {model_dir}") from exc
    types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v}
    if types != ["Transformer", "Pooling", "Normalize"] or modes != {"pooling_mode_mean_tokens"}:
        raise ModelLoadError(
            f"{model_dir}: ONNX export supports Transformer + mean Pooling + Normalize only"
        )


def _export_fp32(model_dir: Path, out: Path) -> None:
    """Trace transformer + masked mean pooling + L2 normalization into one ONNX graph."""
    _check_head(model_dir)
    import torch
    import transformers

    transformers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    # Eager attention exports to plain MatMul/Softmax, which ONNX Runtime fuses and
    # quantizes well; the weights are the ones sentence-transformers loads.
    bert = transformers.AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation="eager", add_pooling_layer=False
    )
    bert.eval()

    class Pooled(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    input_ids = torch.tensor(
        [[101, 7592, 2088, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0, 0]]
    )
    attention_mask = (input_ids != 0).to(torch.int64)
    dynamic = {"batch": 0, "sequence": 1}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter
        torch.onnx.export(
            Pooled(bert),
            (input_ids, attention_mask),
            str(out),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={
                INPUT_NAMES[0]: {v: k for k, v in dynamic.items()},
                INPUT_NAMES[1]: {v: k for k, v in dynamic.items()},
                OUTPUT_NAME: {0: "batch"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _quantize_dynamic(src: Path, dst: Path) -> None:
    """ONNX Runtime's dynamic quantization: per-channel int8 weights of every MatMul.

    Only MatMul: quantizing the embedding tables (Gather) saves file size, not
    time, and costs accuracy.
    """
    import onnx
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        QuantType,
        quantize_dynamic,
    )

    # It logs a generic "consider pre-processing" advice on the root logger every time.
    hush = _DropMessage("pre-processing before quantization")
    logging.getLogger().addFilter(hush)
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().removeFilter(hush)


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _quantize_rowwise(src: Path, dst: Path, model_dir: Path) -> None:
    import onnx

    amax = calibrate(src, model_dir)
    model = onnx.load(str(src))
    rowwise_quantize(model, amax)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def calibration_texts(model_dir: Path, count: int = CALIBRATION_TEXTS) -> list[str]:
    """Deterministic texts of 3-60 random whole words of the model's own vocabulary.

    Which channels of a layer carry the large activations is a property of the
    weights, so random words find them; the export stays a function of the model
    files alone (and the demo catalog or the evaluation data stay unseen).
    """
    vocab = [
        w
        for w in (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
        if w.isascii() and w.isalpha() and len(w) > 1
    ]
    rng = np.random.default_rng(CALIBRATION_SEED)
    return [
        " ".join(vocab[i] for i in rng.integers(0, len(vocab), int(rng.integers(3, 61))))
        for _ in range(count)
    ]


def calibrate(src: Path, model_dir: Path) -> dict[str, npt.NDArray[np.float32]]:
    """Per-channel max |x| of every input of a MatMul by a weight, over real tokens."""
    import onnx

    ort = onnxruntime_module()

    model = onnx.load(str(src))
    weights = {t.name for t in model.graph.initializer if len(t.dims) == 2}
    inputs = list(
        dict.fromkeys(
            n.input[0] for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights
        )
    )
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in inputs
    )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    tokenizer = tokenizer_for(model_dir, read_max_length(model_dir))
    texts = calibration_texts(model_dir)
    amax = {name: np.zeros(0, dtype=np.float32) for name in inputs}
    for start in range(0, len(texts), 32):
        encodings = tokenizer.encode_batch(texts[start : start + 32])
        rows = [e.ids for e in encodings]
        ids, mask = pad(rows, max(len(r) for r in rows))
        values = session.run(inputs, {INPUT_NAMES[0]: ids, INPUT_NAMES[1]: mask})
        real = mask.reshape(-1).astype(bool)
        for name, value in zip(inputs, values, strict=True):
            flat = np.abs(value.reshape(-1, value.shape[-1]))
            peak = flat[real].max(axis=0) if flat.shape[0] == real.shape[0] else flat.max(axis=0)
            amax[name] = peak if amax[name].size == 0 else np.maximum(amax[name], peak)
    return amax


def rowwise_quantize(
    model: Any,
    amax: dict[str, npt.NDArray[np.float32]] | None = None,
    alpha: float = 0.5,
    keep_fp32: Sequence[str] = (),
) -> int:
    """Rewrite, in place, every MatMul by a 2-D weight into int8 with per-token activations.

    For input rows ``x`` (all dimensions but the last flattened) and weight ``W``:
    with ``amax`` (per-channel max |x|, from :func:`calibrate`) the input is first
    smoothed, ``x / c`` and ``c * W`` with ``c = amax^alpha / max|W row|^(1-alpha)``
    (SmoothQuant: a few channels carry most of the range, which would otherwise
    cost every other channel its resolution). ``W`` is quantized per output
    column, ``Wq = round(W / sw)``; each row gets its own uint8 scale ``s`` and
    zero point ``z`` from its min and max, ``q = quantize(x; s, z)``. Then ``x @ W
    ~ s * (q @ Wq * sw) - (z * s) outer (colsum(Wq) * sw)``: ``MatMulIntegerToFloat``
    computes ``q @ Wq * sw`` in one kernel, a rank-1 ``Gemm`` the zero-point term
    (plus the bias of a following Add, which it replaces). MatMuls sharing an
    input (query, key, value) share its smoothing and quantization. Returns how
    many MatMuls were rewritten; those whose node name contains a ``keep_fp32``
    string stay fp32.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    initializers = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def weight_of(node: Any) -> Any:
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or any(k in node.name for k in keep_fp32):
            return None
        return weight

    # One smoothing vector per input, from the largest weight row of all its MatMuls.
    smoothing: dict[str, npt.NDArray[np.float32]] = {}
    row_max: dict[str, npt.NDArray[np.float32]] = {}
    for node in graph.node:
        weight = weight_of(node)
        x = node.input[0] if weight is not None else ""
        if weight is not None and amax is not None and x in amax:
            peak = np.abs(numpy_helper.to_array(weight)).max(axis=1)
            row_max[x] = np.maximum(row_max.get(x, peak), peak)
            smoothing[x] = (
                np.maximum(amax[x], 1e-5) ** alpha / np.maximum(row_max[x], 1e-5) ** (1 - alpha)
            ).astype(np.float32)

    nodes: list[Any] = []
    added: list[Any] = []
    replaced_weights: set[str] = set()
    absorbed: set[int] = set()
    quantized_inputs: dict[str, str] = {}

    def const(name: str, value: npt.ArrayLike) -> str:
        added.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def row_reduce(op_type: str, x: str, output: str) -> str:
        if opset >= 18:  # axes moved from an attribute to an input
            return op(op_type, [x, "rq/axis1"], output, keepdims=0)
        return op(op_type, [x], output, axes=[1], keepdims=0)

    zero = const("rq/zero", np.float32(0.0))
    levels = const("rq/255", np.float32(255.0))
    tiny = const("rq/tiny", np.float32(1e-12))
    unit = const("rq/one", np.float32(1.0))
    axis1 = const("rq/axis1", np.array([1], dtype=np.int64))

    def quantize_rows(x: str, k: int) -> str:
        """Nodes producing ``p/q`` (uint8 rows), ``p/s`` and ``p/zs`` (n, 1), ``p/lead``."""
        p = f"rq/x{len(quantized_inputs)}"
        if x in smoothing:
            x = op("Mul", [x, const(f"{p}/inv_c", 1.0 / smoothing[x])], f"{p}/smooth")
        rows = op("Reshape", [x, const(f"{p}/k", np.array([-1, k], dtype=np.int64))], f"{p}/rows")
        lo = op("Min", [row_reduce("ReduceMin", rows, f"{p}/min"), zero], f"{p}/lo")
        hi = op("Max", [row_reduce("ReduceMax", rows, f"{p}/max"), zero], f"{p}/hi")
        span = op("Div", [op("Sub", [hi, lo], f"{p}/span"), levels], f"{p}/s0")
        scale = op("Max", [span, tiny], f"{p}/scale")
        zero_f = op(
            "Round", [op("Neg", [op("Div", [lo, scale], f"{p}/los")], f"{p}/nlos")], f"{p}/zf"
        )
        zero_u8 = op("Cast", [zero_f], f"{p}/z", to=TensorProto.UINT8)
        op("QuantizeLinear", [rows, scale, zero_u8], f"{p}/q", axis=0)
        op("Unsqueeze", [scale, axis1], f"{p}/s")
        op("Unsqueeze", [op("Mul", [zero_f, scale], f"{p}/zs0"), axis1], f"{p}/zs")
        op("Shape", [x], f"{p}/lead", end=-1)
        return p

    count = 0
    for node in graph.node:
        if id(node) in absorbed:
            continue
        weight = weight_of(node)
        if weight is None:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)
        k, n = w.shape
        x = node.input[0]
        if x in smoothing:
            w = w * smoothing[x][:, None]
        if x not in quantized_inputs:
            quantized_inputs[x] = quantize_rows(x, k)
        p = quantized_inputs[x]
        m = f"rq/m{count}"
        count += 1
        replaced_weights.add(weight.name)
        col_scale = np.abs(w).max(axis=0) / 127.0
        col_scale[col_scale == 0] = 1.0
        wq = np.clip(np.round(w / col_scale), -127, 127).astype(np.int8)
        zero_term = (wq.astype(np.int64).sum(axis=0) * col_scale).astype(np.float32)

        y = op(
            "MatMulIntegerToFloat",
            [f"{p}/q", const(f"{m}/wq", wq), unit, const(f"{m}/sw", col_scale.astype(np.float32))],
            f"{m}/y",
            domain="com.microsoft",
        )
        scaled = op("Mul", [y, f"{p}/s"], f"{m}/ys")
        shape = op(
            "Concat", [f"{p}/lead", const(f"{m}/n", np.array([n], np.int64))], f"{m}/shape", axis=0
        )
        # A following "+ bias" is folded into the rank-1 Gemm: bias - zs outer zero_term.
        after = consumers.get(node.output[0], [])
        bias = None
        if len(after) == 1 and after[0].op_type == "Add":
            others = [i for i in after[0].input if i != node.output[0]]
            if len(others) == 1 and others[0] in initializers:
                bias = others[0]
        if bias is not None:
            ncol = const(f"{m}/nzt", -zero_term.reshape(1, n))
            correction = op("Gemm", [f"{p}/zs", ncol, bias], f"{m}/corr")
            out = op("Add", [scaled, correction], f"{m}/out")
            op("Reshape", [out, shape], after[0].output[0])
            absorbed.add(id(after[0]))
        else:
            correction = op("Mul", [f"{p}/zs", const(f"{m}/zt", zero_term)], f"{m}/corr")
            out = op("Sub", [scaled, correction], f"{m}/out")
            op("Reshape", [out, shape], node.output[0])

    kept = [t for t in graph.initializer if t.name not in replaced_weights]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return count
