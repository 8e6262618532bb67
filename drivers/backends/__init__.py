"""Lazy backend registry (after python-can's interfaces): modules import on first use."""
from __future__ import annotations

import importlib

from .base import Backend, BackendError

BACKENDS: dict[str, tuple[str, str]] = {
    "sim": ("drivers.backends.sim", "SimBackend"),
    "dahdi": ("drivers.backends.dahdi", "DahdiBackend"),
}


def backend_class(name: str) -> type[Backend]:
    try:
        module, cls = BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    return getattr(importlib.import_module(module), cls)


def open_backend(name: str, **options) -> Backend:
    return backend_class(name)(**options)
