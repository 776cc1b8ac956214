"""A description of the machine and software a benchmark ran on."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jaxlib


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo, or what ``platform`` reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Return how many cores this process may run on (its affinity where known)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first_line(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0] if lines else None


def find_c_compiler() -> str | None:
    """Return the path of the system C compiler: ``$CC``, else cc, gcc or clang."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    return None


def _torch_blas() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    for line in torch.__config__.show().splitlines():
        if "Math Kernel Library" in line or "BLAS_INFO" in line or "OpenBLAS" in line:
            return line.strip(" -")
    return None


def describe_machine() -> dict[str, Any]:
    """Collect the CPU, core count, load, library versions and JAX backend."""
    compiler = find_c_compiler()
    repository = Path(__file__).resolve().parents[2]
    commit = _first_line(["git", "-C", str(repository), "rev-parse", "HEAD"])
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jaxlib.version.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(device) for device in jax.devices()],
        "numpy": _version("numpy"),
        "optax": _version("optax"),
        "torch": _version("torch"),
        "torch_blas": _torch_blas(),
        "c_compiler": compiler,
        "c_compiler_version": _first_line([compiler, "--version"])
        if compiler
        else None,
        "jbp_commit": commit,
    }
