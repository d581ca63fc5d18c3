"""Helpers shared by the gpu_worker tests (job specs, running the worker, reading its events)."""
from __future__ import annotations

import time

import json
import os
import subprocess
import sys
from pathlib import Path

from gw_brightrun import REPO

from gpu_worker.contracts import Hyperparameters, JobSpec

SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLWdwdS13b3JrZXI="


def make_spec(tmp_path: Path, model_dir: Path, dataset_files, **overrides) -> JobSpec:
    train, val = dataset_files
    hp = dict(
        lora_r=8, lora_alpha=16, learning_rate=3e-3, warmup_ratio=0.0, num_epochs=2.0,
        micro_batch_size=1, gradient_accumulation_steps=2, max_seq_len=2048, seed=7,
    )
    hp.update(overrides.pop("hp", {}))
    values = dict(
        job_id="job-test",
        attempt=1,
        base_model=str(model_dir),
        train_uri=train.as_uri(),
        val_uri=val.as_uri(),
        output_uri=(tmp_path / "out").as_uri(),
        hyperparameters=Hyperparameters(**hp),
        webhook_secret=SECRET,
        checkpoint_every=100,
        keep_checkpoints=2,
        # The evaluating stage kept small: these tests are about training; the evaluation's own
        # tests ask for more.
        eval_max_replies=2,
        eval_max_new_tokens=8,
        eval_max_emotion_items=4,
        eval_knowledge=False,
    )
    values.update(overrides)
    return JobSpec(**values)


def run_worker(spec: JobSpec, work_dir: Path, *, timeout: float = 240, hooks: bool = True) -> subprocess.CompletedProcess:
    """`python -m gpu_worker run` in a subprocess, the spec passed as the pod gets it (base64 env)."""
    env = dict(os.environ)
    env["BRIGHTRUN_JOB_SPEC"] = spec.to_env_value()
    env["BRIGHTRUN_LOG_LEVEL"] = "WARNING"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if hooks:
        env["BRIGHTRUN_ALLOW_TEST_HOOKS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "gpu_worker", "run", "--work-dir", str(work_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


def events_of(work_dir: Path) -> list[dict]:
    from gpu_worker.events import read_events

    return read_events(Path(work_dir) / "events.jsonl")


def of_type(events: list[dict], type_: str) -> list[dict]:
    return [e for e in events if e["type"] == type_]


def json_load(path: Path):
    return json.loads(Path(path).read_text())


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 recording POSTs (webhooks) and PUTs/GETs (storage)."""

    def __init__(self, port: int = 0, status: int = 200):
        import http.server
        import threading

        self.requests: list[dict] = []
        self.objects: dict[str, bytes] = {}
        self.status = status
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self):
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def do_POST(self):
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": self._body(),
                                          "t": time.monotonic()})
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_PUT(self):
                receiver.objects[self.path] = self._body()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self):
                data = receiver.objects.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("content-length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def emitted(self) -> list[dict]:
        """The events as the pod emitted them: a batched metrics request (`data.points`) gives one
        event per point, with the point's seq and step (its data keeps `step`, drops `seq`)."""
        out = []
        for event in self.events():
            points = event["data"].get("points") if event["type"] == "metrics" else None
            if points is None:
                out.append(event)
                continue
            for p in points:
                data = {k: v for k, v in p.items() if k != "seq"}
                out.append({**event, "event_id": None, "seq": p["seq"], "step": p["step"], "data": data})
        return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
