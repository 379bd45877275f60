"""What every benchmark under bench/ shares: the percentile, and the run of a `main` — a temp dir of its own,
SIGTERM turned into the same clean stop as Ctrl-C (finally blocks run: nothing left running), the result
written as `<name>-<UTC timestamp>.json`, and the exit status."""

from __future__ import annotations

import json
import math
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; 0.0 for no values."""
    if not values:
        return 0.0
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def show(path: Path) -> str:
    """`path` relative to the repository when it lies in it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_bench(
    name: str,
    body: Callable[[Path], tuple[dict[str, Any], int]],
    *,
    results: Path,
    keep: bool,
    say: Callable[[str], None],
    failures: tuple[type[Exception], ...] = (RuntimeError,),
    prefix: str | None = None,
    beside: Callable[[Path, Path], None] | None = None,
) -> int:
    """Run `body(workdir)`, which returns the result to write and the exit status. A `failures` exception
    (the bench could not measure what it claims) is one FAILED line and status 1; an interrupt, 130."""
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix=prefix or f"koppel-bench-{name}-"))
    try:
        result, status = body(workdir)
        results.mkdir(parents=True, exist_ok=True)
        out = results / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"results: {show(out)}")
        if beside is not None:  # what else the run leaves next to its results (`beside(out, workdir)`)
            beside(out, workdir)
        return status
    except failures as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if keep:
            (workdir / "keep").touch()  # a stale-directory sweep leaves it
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
