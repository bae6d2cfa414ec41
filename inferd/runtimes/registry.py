"""Which runtime serves a model: a platform names its loader, the file it loads and its own options.

A model's ``config.yaml`` may say ``platform:`` (or Triton's ``backend:``); when it says neither, the
version directory's files decide (``model.onnx`` first, then ``model.py``). Each runtime receives the
settings every runtime shares (``RuntimeSettings``) and its own option block, never the whole config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferd.errors import ModelLoadError
from inferd.model_config import CONFIG_FILE, ModelConfig, PythonOptions
from inferd.runtimes.base import Runtime, RuntimeSettings
from inferd.runtimes.ensemble import EnsembleRuntime
from inferd.runtimes.generative import GenerativeRuntime
from inferd.runtimes.onnx import OnnxRuntime
from inferd.runtimes.processes import ProcessRuntime
from inferd.runtimes.python import PythonRuntime
from inferd.runtimes.pytorch import PyTorchRuntime
from inferd.runtimes.tabular.lightgbm_model import load_lightgbm
from inferd.runtimes.tabular.sklearn_model import load_sklearn
from inferd.runtimes.tabular.xgboost_model import load_xgboost

# (model file, settings shared by every runtime, this runtime's own options) -> a loaded runtime.
Loader = Callable[[Path, RuntimeSettings, Any], Runtime]


@dataclass(frozen=True, slots=True)
class Platform:
    name: str
    # The file a version directory holds for this platform ("." : none, the directory itself).
    model_file: str
    # The config.yaml key (a ModelConfig field) holding this runtime's options.
    options_key: str
    load: Loader
    # How Triton names it in a model configuration: ``platform`` and ``backend``.
    triton_platform: str
    backend: str
    # Other names config.yaml may use for it (Triton's).
    aliases: tuple[str, ...] = ()
    # Other files it loads when ``model_file`` is absent, in order of preference.
    other_files: tuple[str, ...] = ()
    # Whether ``instance_kind: process`` (one worker process per instance) is supported.
    process_instances: bool = False

    @property
    def files(self) -> tuple[str, ...]:
        return (self.model_file, *self.other_files)

    def file_in(self, version_dir: Path) -> Path | None:
        """The file of ``version_dir`` this platform loads; None when it holds none. An ensemble
        (model file ".") loads the version directory itself, which may be empty."""
        if self.model_file == ".":
            return version_dir if version_dir.is_dir() else None
        return next((version_dir / f for f in self.files if (version_dir / f).is_file()), None)


def python_runtime(path: Path, settings: RuntimeSettings, options: PythonOptions) -> Runtime:
    """``platform: python``: instances as threads of the server, or one worker process each."""
    if settings.instance_kind == "process":
        return ProcessRuntime(path, settings, options)
    return PythonRuntime(path, settings, options)


# In detection order: a version directory holding several model files is served by the first.
PLATFORMS: dict[str, Platform] = {
    platform.name: platform
    for platform in (
        Platform(
            "onnxruntime",
            "model.onnx",
            "onnxruntime",
            OnnxRuntime,
            "onnxruntime_onnx",
            "onnxruntime",
            ("onnxruntime_onnx",),
        ),
        Platform("python", "model.py", "python", python_runtime, "python", "python", process_instances=True),
        Platform(
            "pytorch",
            "model.pt",
            "pytorch",
            PyTorchRuntime,
            "pytorch_libtorch",
            "pytorch",
            ("pytorch_libtorch",),
            ("model.pt2",),
        ),
        Platform(
            "sklearn", "model.joblib", "sklearn", load_sklearn, "sklearn", "sklearn", (), ("model.pkl",)
        ),
        Platform("xgboost", "model.json", "xgboost", load_xgboost, "xgboost", "xgboost", (), ("model.ubj",)),
        Platform("lightgbm", "model.txt", "lightgbm", load_lightgbm, "lightgbm", "lightgbm"),
        # A language model (docs/generative.md): its model.onnx is only served so when declared, as
        # the onnxruntime platform comes first in detection.
        Platform("generative", "model.onnx", "generative", GenerativeRuntime, "generative", "generative"),
        # Triton's ensembles have an empty version directory and no backend.
        Platform("ensemble", ".", "ensemble_scheduling", EnsembleRuntime, "ensemble", ""),
    )
}
MODEL_FILES = tuple(name for platform in PLATFORMS.values() for name in platform.files if name != ".")
_BY_ALIAS = {alias: p for p in PLATFORMS.values() for alias in (p.name, *p.aliases)}


def declared_platform(config: ModelConfig, where: Path) -> Platform | None:
    """The platform config.yaml names (``platform`` or ``backend``); None when it names none."""
    named = [(k, v) for k, v in (("platform", config.platform), ("backend", config.backend)) if v]
    found: list[Platform] = []
    for key, value in named:
        platform = _BY_ALIAS.get(value)
        if platform is None:
            known = ", ".join(sorted(_BY_ALIAS))
            raise ModelLoadError(
                f"{where / CONFIG_FILE}: '{key}': unknown platform '{value}'; known: {known}"
            )
        found.append(platform)
    if len(found) == 2 and found[0] is not found[1]:
        raise ModelLoadError(
            f"{where / CONFIG_FILE}: platform '{config.platform}' and backend '{config.backend}' disagree"
        )
    return found[0] if found else None


def resolve(version_dir: Path, config: ModelConfig) -> Platform:
    """The platform serving ``version_dir``: the declared one, else the first whose file is there."""
    platform = declared_platform(config, version_dir.parent)
    if platform is not None:
        return platform
    for candidate in PLATFORMS.values():
        # An ensemble has no file to find it by: it is only ever declared.
        if candidate.model_file != "." and candidate.file_in(version_dir) is not None:
            return candidate
    raise ModelLoadError(
        f"{version_dir}: no model file (expected one of {', '.join(MODEL_FILES)}, "
        "or set 'platform:' in config.yaml)"
    )


def model_file(version_dir: Path, config: ModelConfig) -> Path | None:
    """The file a version is served from; None when the configuration cannot say (a load reports why)."""
    try:
        platform = resolve(version_dir, config)
    except ModelLoadError:
        return None
    return platform.file_in(version_dir) or version_dir / platform.model_file


def create_runtime(model_path: Path, config: ModelConfig) -> Runtime:
    """The repository's runtime factory: ``model_path`` is any file of the version directory."""
    version_dir = model_path.parent
    platform = resolve(version_dir, config)
    path = platform.file_in(version_dir)
    if path is None:
        raise ModelLoadError(
            f"{version_dir / platform.model_file}: file not found "
            f"(platform {platform.name} loads {' or '.join(platform.files)})"
        )
    for other in PLATFORMS.values():
        if other.options_key != platform.options_key and other.options_key in config.model_fields_set:
            raise ModelLoadError(
                f"{version_dir.parent / CONFIG_FILE}: '{other.options_key}' options are set but the model's "
                f"platform is {platform.name}"
            )
    if config.instance_kind == "process" and not platform.process_instances:
        raise ModelLoadError(
            f"{version_dir.parent / CONFIG_FILE}: 'instance_kind: process' is supported for Python models "
            f"only; platform {platform.name} runs its instances as threads"
        )
    settings = RuntimeSettings(
        config.instances, config.max_batch_size, config.inputs, config.outputs, config.instance_kind
    )
    return platform.load(path, settings, getattr(config, platform.options_key))


def platform_of(runtime: Runtime) -> Platform:
    """The platform a loaded runtime belongs to; runtimes that do not say are ONNX stand-ins (tests)."""
    return PLATFORMS.get(getattr(runtime, "platform", "onnxruntime"), PLATFORMS["onnxruntime"])


def instance_kind(runtime: Runtime) -> str:
    """How a loaded runtime's instances execute: "thread" (the server's worker threads) or "process"."""
    kind = getattr(runtime, "instance_kind", "thread")
    return kind if isinstance(kind, str) else "thread"


def device_kind(runtime: Runtime) -> str:
    """Triton's instance kind of a loaded runtime: KIND_GPU when it runs on an accelerator."""
    kind = getattr(runtime, "device_kind", "KIND_CPU")
    return kind if isinstance(kind, str) else "KIND_CPU"
