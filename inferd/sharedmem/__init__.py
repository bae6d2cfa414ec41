"""Triton's system shared memory extension: regions a local client registers by POSIX key, and the
reads and writes of tensors that name them (docs/triton-compat.md; threat model in docs/security.md)."""

from inferd.sharedmem.refs import SHM_KEYS, output_ref, parameter_ref
from inferd.sharedmem.regions import NO_CUDA, RegionRegistry, SharedMemoryAccess

__all__ = ["NO_CUDA", "SHM_KEYS", "RegionRegistry", "SharedMemoryAccess", "output_ref", "parameter_ref"]
