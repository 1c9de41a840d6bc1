"""Helpers shared by the benchmark scripts (not part of the library): class names, machine
description, robust timing on a shared machine."""

from __future__ import annotations

import ctypes
import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable

import torch


def class_names(num_classes: int) -> list[str]:
    """Readable class names: CIFAR-100's fine labels, then ``"small <name>"`` beyond 100.

    Real class names give the prompts their real token lengths (L' = 10 for CIFAR-100 with
    "a photo of a {name}.").
    """
    try:
        from alta.data.datasets import CIFAR100_CLASSES

        base = [name.replace("_", " ") for name in CIFAR100_CLASSES]
    except ImportError:  # pragma: no cover - the data package is optional here
        base = [f"class {i}" for i in range(100)]
    names = []
    for i in range(num_classes):
        name = base[i % len(base)]
        rounds = i // len(base)
        names.append(name if rounds == 0 else f"{'small ' * rounds}{name}")
    return names


def sync(device: torch.device) -> None:
    """Wait for queued device work (timing boundaries only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, device work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def summary(times: list[float]) -> dict:
    """Median, min, max and count of a list of durations (seconds)."""
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "n": len(times),
    }


def _malloc_trim() -> None:
    """Give the C heap's free pages back to the OS (glibc), so that RSS counts live memory."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS deltas may then read low
        pass


class PeakMemory:
    """Peak memory of a block of code (the largest value over all blocks it wrapped).

    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation at entry (exact). CPU: the
    process's resident set size sampled every 2 ms, peak minus the value at entry, after
    ``malloc_trim`` has returned the heap's free pages to the OS (approximate; without the trim,
    a block that runs after a bigger one reuses its freed pages and reads ~0). The trim makes
    the wrapped block fault its pages in again, so wrap untimed runs only.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            _malloc_trim()
            self._start = self._rss()
            self._max = self._start
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated(self.device) - self._start)
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, self._rss())
            self.peak_bytes = max(self.peak_bytes, self._max - self._start)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine() -> dict:
    """CPU model, cores, GPU, versions, load, date: what a results file must say."""
    cpu = cpu_model()
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
    try:
        import alta

        info["alta"] = alta.__version__
    except Exception:  # noqa: BLE001
        pass
    try:
        import clip  # noqa: F401
        from importlib.metadata import version

        info["clip_anytorch"] = version("clip-anytorch")
    except Exception:  # noqa: BLE001
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except OSError:
        pass
    return info
