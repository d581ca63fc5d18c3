"""End to end: wall time of `make demo`, cold and warm, and the demo's own start-to-first-metric.

    .venv/bin/python benchmarks/demo_wall.py [--repeats 1]

Runs `make demo` exactly as a user does (the embedded default: SQLite, embedded Redis, local
provider), in a fresh var/ folder of its own (BRIGHTRUN_VAR_DIR), so it never touches the
checkout's var/ and the machine's PostgreSQL and Redis are not used:
  cold  empty var/ folder: no database, no tiny model (the venv stays)
  warm  the same folder again: database migrated, tiny model built
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _support as S  # noqa: E402


def run_demo(var_dir: Path, log: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CHANNEL_LAYER_URL")}
    env["BRIGHTRUN_VAR_DIR"] = str(var_dir)
    t = time.perf_counter()
    proc = subprocess.run(["make", "demo"], cwd=S.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    out = proc.stdout.decode(errors="replace")
    log.write_text(out)
    first = re.search(r"start to first metric: ([0-9.]+) s; start to completed: ([0-9.]+) s", out)
    built = re.search(r"built in ([0-9.]+) s", out)
    return {"rc": proc.returncode, "wall": wall, "first_metric": float(first[1]) if first else float("nan"),
            "completed": float(first[2]) if first else float("nan"), "model_build": float(built[1]) if built else 0.0}


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    rows = []
    logs = Path(tempfile.mkdtemp(prefix="bench-demo-logs-"))
    for r in range(args.repeats):
        var_dir = Path(tempfile.mkdtemp(prefix="bench-demo-var-"))
        try:
            for kind in ("cold", "warm"):
                res = run_demo(var_dir, logs / f"demo-{r + 1}-{kind}.log")
                rows.append([r + 1, kind, "ok" if res["rc"] == 0 else f"exit {res['rc']}", res["wall"],
                             res["model_build"], res["first_metric"], res["completed"]])
        finally:
            shutil.rmtree(var_dir, ignore_errors=True)
    me = "benchmarks/demo_wall.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = S.table("End to end: make demo (embedded default, local provider)",
                  ["run", "var/", "result", "wall s", "tiny model built s", "start->first metric s",
                   "start->completed s"], rows, f".venv/bin/python {me.strip()}   (logs in {logs})")
    print(out, flush=True)
    return out


if __name__ == "__main__":
    main()
