"""The frozen base model run by ONNX Runtime: same weights, same vectors, less time.

Why a second backend: on a small CPU the torch path spends its time in fp32
matmuls and framework overhead. ONNX Runtime runs the same graph with fused
kernels, and int8 matmuls where a variant asks for them.

The graph is exported here, from the bundled weights (``torch.onnx.export`` of
the transformer with mean pooling and L2 normalization inside the graph), and
never downloaded. Exports are cached per base-model fingerprint and written
atomically (temporary file, then rename), so concurrent processes at worst
export twice and never read half a file. The encoder's fingerprint covers the
base fingerprint, the variant, the tokenizer length and the ``.onnx`` bytes:
a store built with one graph refuses another.

Variants:

``fp32``
    The exported graph as is; agrees with torch to about 1e-6.
``int8``
    ``onnxruntime.quantization.quantize_dynamic``: per-channel int8 weights and
    uint8 activations with one scale per *tensor*, i.e. per batch. The [CLS]
    rows carry activations 3-7 times larger than other tokens, so that shared
    scale costs short texts most of their resolution, and a text's vector
    depends on the other texts in its batch.
``int8-rowwise``
    Int8 weights too, but every token row is quantized with its own scale and
    zero point, after SmoothQuant-style smoothing (a few channels carry most of
    the range; per-channel factors move it into the weights, calibrated on
    random words of the model's own vocabulary). Standard ops plus ONNX
    Runtime's ``MatMulIntegerToFloat``: about 10% slower than ``int8``, batch
    independent, and several times closer to fp32.

:func:`agreement` measures a candidate backend against a reference one; the
acceptance rule for changing the default is :data:`ACCEPT_COSINE` on every
text and :data:`ACCEPT_OVERLAP` mean top-10 neighbour overlap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from ..errors import ModelLoadError
from .encoder import Encoder, Vectors, _read_dimension, bundled_model_dir, model_fingerprint

Variant = Literal["fp32", "int8", "int8-rowwise"]
VARIANTS: Final[tuple[Variant, ...]] = get_args(Variant)

# Bump when the export recipe changes: cached files of an older recipe are then ignored.
EXPORT_REVISION: Final = 2
OPSET: Final = 17
INPUT_NAMES: Final = ("input_ids", "attention_mask")
OUTPUT_NAME: Final = "embedding"
DEFAULT_MAX_LENGTH: Final = 256

# int8-rowwise smoothing statistics come from these many random-vocabulary texts.
CALIBRATION_TEXTS: Final = 256
CALIBRATION_SEED: Final = 0

# The acceptance rule of issue 5 for making a backend the default.
ACCEPT_COSINE: Final = 0.99
ACCEPT_OVERLAP: Final = 0.95

IntMatrix = npt.NDArray[np.int64]

# One export at a time per process; re-entrant because int8 exports first need fp32.
_export_lock = threading.RLock()


# -- exporting ------------------------------------------------------------------------------


def default_cache_dir(base_fingerprint: str) -> Path:
    """``$XDG_CACHE_HOME/ownrank/onnx/<fingerprint prefix>`` (``~/.cache`` by default)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "ownrank" / "onnx" / base_fingerprint.removeprefix("sha256:")[:16]


def onnx_file(cache_dir: Path, variant: Variant) -> Path:
    """Where the export of ``variant`` lives in ``cache_dir``."""
    return Path(cache_dir) / f"all-minilm-l6-v2.{variant}.r{EXPORT_REVISION}.onnx"


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


def _onnxruntime() -> Any:
    """ONNX Runtime, imported when first needed (it ships no type information)."""
    import onnxruntime  # type: ignore[import-untyped]

    return onnxruntime


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

    ort = _onnxruntime()

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
    tokenizer = _tokenizer(model_dir, _read_max_length(model_dir))
    texts = calibration_texts(model_dir)
    amax = {name: np.zeros(0, dtype=np.float32) for name in inputs}
    for start in range(0, len(texts), 32):
        encodings = tokenizer.encode_batch(texts[start : start + 32])
        rows = [e.ids for e in encodings]
        ids, mask = _pad(rows, max(len(r) for r in rows))
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


# -- fingerprint ----------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(path: Path) -> tuple[Path, int, int]:
    st = path.stat()
    return path.resolve(), st.st_size, st.st_mtime_ns


def onnx_fingerprint(base_fingerprint: str, variant: str, max_length: int, path: Path) -> str:
    """sha256 over the base model fingerprint, the variant, the token limit and the graph."""
    digest = hashlib.sha256()
    digest.update(f"ownrank-onnx\0{base_fingerprint}\0{variant}\0{max_length}\0".encode())
    digest.update(_file_sha256(*_stat_key(path)).encode())
    return "sha256:" + digest.hexdigest()


def _read_max_length(model_dir: Path) -> int:
    """The token limit sentence-transformers applies (``sentence_bert_config.json``)."""
    try:
        conf = json.loads((model_dir / "sentence_bert_config.json").read_text())
        return int(conf.get("max_seq_length", DEFAULT_MAX_LENGTH))
    except (OSError, ValueError):
        return DEFAULT_MAX_LENGTH


# -- the encoder ----------------------------------------------------------------------------


class OnnxEncoder:
    """The frozen base model through ONNX Runtime; an :class:`Encoder` like ``BaseEncoder``.

    Loading is lazy: the dimension comes from files; the export (if not cached),
    the fingerprint and the session when first needed. Texts are tokenized by
    the model directory's own ``tokenizer.json`` with the sentence-transformers
    limit and truncation, sorted by length and padded per batch.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        variant: Variant = "fp32",
        cache_dir: Path | str | None = None,
        threads: int = 1,
        batch_size: int = 32,
        max_length: int | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown ONNX variant {variant!r}; expected one of {VARIANTS}")
        if threads < 1 or batch_size < 1:
            raise ValueError("threads and batch_size must be at least 1")
        self.model_dir = Path(model_dir).resolve() if model_dir else bundled_model_dir()
        self.variant: Variant = variant
        self.threads = threads
        self.batch_size = batch_size
        self.base_fingerprint = model_fingerprint(self.model_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(self.base_fingerprint)
        self.max_length = max_length or _read_max_length(self.model_dir)
        self._dimension = _read_dimension(self.model_dir)
        self._fingerprint: str | None = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def onnx_path(self) -> Path:
        """The graph this encoder runs (exported into the cache on first use)."""
        return export_onnx(self.model_dir, self.variant, self.cache_dir)

    @property
    def fingerprint(self) -> str:
        with self._lock:
            if self._fingerprint is None:
                self._fingerprint = self._graph_fingerprint()
            return self._fingerprint

    def _graph_fingerprint(self) -> str:
        return onnx_fingerprint(
            self.base_fingerprint, self.variant, self.max_length, self.onnx_path
        )

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            session, _ = self._loaded()
            self._dimension = int(session.get_outputs()[0].shape[-1])
        return self._dimension

    @property
    def is_loaded(self) -> bool:
        return self._session is not None

    def _loaded(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                self._tokenizer = self._load_tokenizer()
                self._session = self._load_session()
            return self._session, self._tokenizer

    def _load_tokenizer(self) -> Any:
        return _tokenizer(self.model_dir, self.max_length)

    def _load_session(self) -> Any:
        ort = _onnxruntime()

        path = self.onnx_path
        fingerprint = self._graph_fingerprint()
        if self._fingerprint is not None and fingerprint != self._fingerprint:
            raise ModelLoadError(f"{path} changed on disk since its fingerprint was taken")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path} into ONNX Runtime: {exc}") from exc
        if self._graph_fingerprint() != fingerprint:
            raise ModelLoadError(f"{path} changed on disk while it was loaded")
        self._fingerprint = fingerprint
        return session

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session, tokenizer = self._loaded()
        encodings = tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        order = np.argsort(-lengths, kind="stable")  # similar lengths share a batch
        out: Vectors | None = None
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            ids, mask = _pad([encodings[i].ids for i in rows], int(lengths[rows].max()))
            vectors = session.run([OUTPUT_NAME], {INPUT_NAMES[0]: ids, INPUT_NAMES[1]: mask})[0]
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        assert out is not None
        if self._dimension is None:
            self._dimension = int(out.shape[1])
        return out


def _tokenizer(model_dir: Path, max_length: int) -> Any:
    """The model's ``tokenizer.json``, truncating like sentence-transformers, not padding.

    tokenizer.json ships fixed padding to 128; sentence-transformers truncates at
    max_seq_length (longest_first) and pads per batch, as :func:`_pad` does.
    """
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {model_dir}: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
    return tokenizer


def _pad(rows: Sequence[Sequence[int]], width: int) -> tuple[IntMatrix, IntMatrix]:
    """Token ids and attention mask, right-padded with id 0 to ``width``."""
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return ids, mask


# -- agreement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How closely a candidate backend reproduces a reference one on a set of texts."""

    texts: int
    cosine_min: float
    cosine_mean: float
    neighbour_overlap: float
    k: int

    @property
    def passes(self) -> bool:
        """The issue-5 rule: cosine >= 0.99 on every text and top-10 overlap >= 0.95."""
        return self.cosine_min >= ACCEPT_COSINE and self.neighbour_overlap >= ACCEPT_OVERLAP

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passes": self.passes}


def agreement(
    reference: Encoder, candidate: Encoder, texts: Sequence[str], *, k: int = 10
) -> Agreement:
    """Per-text cosine (min, mean) and mean top-``k`` neighbour overlap of two encoders.

    Duplicate texts are dropped first: identical vectors would make a text's
    neighbours ambiguous. Neighbours are found among the texts' own vectors,
    excluding the text itself.
    """
    unique = list(dict.fromkeys(texts))
    return vector_agreement(reference.encode(unique), candidate.encode(unique), k=k)


def vector_agreement(reference: Vectors, candidate: Vectors, *, k: int = 10) -> Agreement:
    """:func:`agreement` on vectors already computed (row i of both is the same text)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
    n = reference.shape[0]
    if n == 0:
        return Agreement(0, float("nan"), float("nan"), float("nan"), k)
    ref = _unit(reference)
    cand = _unit(candidate)
    cosines = np.einsum("ij,ij->i", ref, cand)
    k_eff = min(k, n - 1)
    if k_eff == 0:
        overlap = 1.0
    else:
        ref_nn = _neighbours(ref, k_eff)
        cand_nn = _neighbours(cand, k_eff)
        shared = sum(
            len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ref_nn, cand_nn, strict=True)
        )
        overlap = shared / (n * k_eff)
    return Agreement(
        texts=n,
        cosine_min=float(cosines.min()),
        cosine_mean=float(cosines.mean()),
        neighbour_overlap=float(overlap),
        k=k_eff,
    )


def _unit(vectors: Vectors) -> npt.NDArray[np.float64]:
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def _neighbours(vectors: npt.NDArray[np.float64], k: int, chunk: int = 1024) -> IntMatrix:
    """Indices of each row's ``k`` most similar other rows (order within the k unspecified)."""
    n = vectors.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sims = vectors[start:stop] @ vectors.T
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        out[start:stop] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return out
