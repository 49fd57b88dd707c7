"""How long ``personahub.core.store.connect`` takes to open a database, and what skipping the
schema's DDL on a file already brought up to it saves (``store._schema_current``).

Every command and job opens its database at least once (a writer opens a file without a WAL
once, read-write, and checks it there), so this is latency every user pays and most tests pay
many times. Prints the mean milliseconds per ``connect`` for a new file, an existing file as writer (with
the DDL skipped, and with it forced, in the same run), and as reader, and the ratio.

    python bench/bench_connect.py [--n 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from personahub.core import store


def timed(paths: list[Path], *, read_only: bool = False) -> float:
    """Mean milliseconds of one connect-and-close over ``paths``."""
    took = []
    for path in paths:
        start = time.perf_counter()
        store.connect(path, read_only=read_only).close()
        took.append(time.perf_counter() - start)
    return statistics.mean(took) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="files opened per case")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-connect-"))
    paths = [folder / f"db{i}.duckdb" for i in range(args.n)]
    new = timed(paths)
    skipped, forced = [], []
    current = store._schema_current
    for _ in range(3):  # interleaved, so both see the same machine
        skipped.append(timed(paths))
        store._schema_current = lambda con, ddl: False
        try:
            forced.append(timed(paths))
        finally:
            store._schema_current = current
    reader = timed(paths, read_only=True)
    fast, slow = min(skipped), min(forced)
    print(f"connect, {args.n} files: new {new:.1f} ms; existing writer {fast:.1f} ms "
          f"(DDL run every time: {slow:.1f} ms); reader {reader:.1f} ms")
    print(f"RESULT existing-writer speed-up from skipping the DDL: {slow / fast:.2f}x")


if __name__ == "__main__":
    main()
