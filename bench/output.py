"""Results of the live-path benchmarks: bench/results/<name>.json, and <name>.png when matplotlib is there."""
from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "note": "cores shared with other work on this machine; compare ratios, not absolute figures"}


def write_named(name: str, report: dict[str, Any], plot: Callable[[dict[str, Any], Any], None]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **report}, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return path
    figure, axes = plt.subplots(figsize=(7, 4))
    plot(report, axes)
    axes.set_title(f"{name} ({machine()['date']}, {os.cpu_count()} cores, Python {platform.python_version()})",
                   fontsize=9)
    figure.tight_layout()
    figure.savefig(RESULTS / f"{name}.png", dpi=100)
    plt.close(figure)
    return path
