"""The checks a request passes before it is scheduled: its version's signature (validation.py) and
input limits (limits.py). They are built on a version's first request and kept per handle;
LoadedModel hashes by identity, so a reload or a swap gets new ones."""

from __future__ import annotations

from inferd.dataplane.limits import InputChecks, build_checks, check_inputs
from inferd.dataplane.validation import SignatureAdmission, ValidatedInputs, validate
from inferd.repository.manager import LoadedModel
from inferd.repository.registry import ModelRegistry
from inferd.types import InferRequest


class RequestChecks:
    def __init__(self, registry: ModelRegistry, max_tensor_elements: int, max_bytes_length: int) -> None:
        self._registry = registry
        self._max_tensor_elements = max_tensor_elements
        self._max_bytes_length = max_bytes_length
        self._checks: dict[LoadedModel, InputChecks] = {}
        # Built with them: each handle's checks on declared inputs, which codecs run before decoding.
        # The data plane reads this table itself, once per request (DataPlane.check_servable); it is
        # only ever changed in place.
        self.admissions: dict[LoadedModel, SignatureAdmission] = {}

    def prepare(self, model: LoadedModel, request: InferRequest) -> ValidatedInputs:
        """The request checked against one version's signature and input limits."""
        checked = validate(request, model.signature)
        check_inputs(self._checks.get(model) or self.build(model), checked.arrays)
        return checked

    def build(self, model: LoadedModel) -> InputChecks:
        """The checks of a handle met for the first time (they land in ``admissions`` too)."""
        checks = build_checks(
            model.config, model.signature, self._max_tensor_elements, self._max_bytes_length
        )
        # A new handle (first request after a load or a swap): forget handles no longer served, so
        # replaced versions are not kept alive by these tables.
        for stale in [m for m in self._checks if not self._registry.serves(m)]:
            del self._checks[stale]
        self._checks[model] = checks
        for stale in [m for m in self.admissions if m not in self._checks]:
            del self.admissions[stale]
        self.admissions[model] = SignatureAdmission(model.name, model.signature, checks.max_elements)
        return checks
