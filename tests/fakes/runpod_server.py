"""A fake RunPod GraphQL API on 127.0.0.1, for running the real `runpod` SDK in tests.

It answers what runpod-python 1.12 sends (and the spot mutation and price query we send through
its GraphQL helper), keeps pods in memory, checks the API key, records every request, and can be
told to fail the next call(s) the ways the real API fails:

    with FakeRunPodServer(api_key="test-key") as server:
        os.environ["RUNPOD_API_BASE_URL"] = server.base_url   # the SDK appends /graphql
        server.fail_next("no_capacity", operation="podFindAndDeployOnDemand")
        server.fail_next("http_500")           # HTML 500 page, as from a proxy
        server.fail_next("http_401")
        server.fail_next("delay", seconds=2)   # answers normally after the delay
        server.fail_next("drop")               # closes the connection without an answer
        server.fail_next("graphql_error", message="Something went wrong.", status=200)

Like the SDK itself, the GraphQL text is handled with a small literal parser rather than a full
GraphQL engine: the operation is recognised by its field name and `input: {...}` is parsed as a
GraphQL value. A string with a raw quote or newline in it is a syntax error (HTTP 400), as on the
real API, which is why the job spec travels base64-encoded.

Pod lifecycle: a new pod is RUNNING with `runtime: null` for `boot_s` seconds (starting), then has
a runtime. `podTerminate` marks it TERMINATED and the pod query keeps showing it for
`terminate_polls` more queries before it answers `pod: null`, so callers must poll to confirm.
`evict(pod_id)` acts out a spot interruption (desiredStatus EXITED).

Cost, the way RunPod reports and charges it: every pod has `costPerHr` (the GPU type's price on
its cloud × GPU count, or the bid for a spot pod), `runtime.uptimeInSeconds` counts from the rent
while it runs, and `ledger()` is the account's per-second bill: one line per pod, from the rent
until it stops billing (terminated, stopped or evicted), whole seconds rounded up, cost = seconds ×
costPerHr ÷ 3600. Refused creates (capacity, 401, bad bid) leave no line. `clock` (default
`time.time`) may be replaced by a simulated clock.
"""
from __future__ import annotations

import json
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

NO_CAPACITY_MESSAGE = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)
INTERNAL_ERROR_MESSAGE = "Something went wrong. Please try again later or contact support."

# id -> prices ($/h per GPU) and facts. Numbers are plausible, not RunPod's current list.
DEFAULT_GPU_TYPES: dict[str, dict[str, Any]] = {
    "NVIDIA GeForce RTX 4090": {
        "displayName": "RTX 4090", "memoryInGb": 24, "securePrice": 0.69, "communityPrice": 0.34,
        "secureSpotPrice": 0.35, "communitySpotPrice": 0.2, "minimumBidPrice": 0.2,
    },
    "NVIDIA RTX A6000": {
        "displayName": "RTX A6000", "memoryInGb": 48, "securePrice": 0.76, "communityPrice": 0.49,
        "secureSpotPrice": 0.39, "communitySpotPrice": 0.25, "minimumBidPrice": 0.25,
    },
    "NVIDIA A40": {
        "displayName": "A40", "memoryInGb": 48, "securePrice": 0.44, "communityPrice": 0.39,
        "secureSpotPrice": 0.24, "communitySpotPrice": 0.2, "minimumBidPrice": 0.2,
    },
    "NVIDIA A100 80GB PCIe": {
        "displayName": "A100 PCIe", "memoryInGb": 80, "securePrice": 1.64, "communityPrice": 1.19,
        "secureSpotPrice": 0.82, "communitySpotPrice": 0.6, "minimumBidPrice": 0.6,
    },
    "NVIDIA H100 80GB HBM3": {
        "displayName": "H100 SXM", "memoryInGb": 80, "securePrice": 2.99, "communityPrice": 2.69,
        "secureSpotPrice": 1.75, "communitySpotPrice": 1.5, "minimumBidPrice": 1.5,
    },
}

FAULT_KINDS = ("no_capacity", "http_500", "http_401", "delay", "drop", "graphql_error")


class GraphQLSyntaxError(ValueError):
    pass


# -- a GraphQL value-literal parser (enough for what the SDK pastes into its text) --------------

_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n,":
        i += 1
    return i


def parse_value(text: str, i: int) -> tuple[Any, int]:
    """Parse one GraphQL input value at text[i:]; return (value, index after it).
    Enum values come back as plain strings."""
    i = _skip(text, i)
    if i >= len(text):
        raise GraphQLSyntaxError("Syntax Error: Unexpected <EOF>.")
    ch = text[i]
    if ch == "{":
        obj: dict[str, Any] = {}
        i += 1
        while True:
            i = _skip(text, i)
            if i < len(text) and text[i] == "}":
                return obj, i + 1
            m = _NAME.match(text, i)
            if not m:
                raise GraphQLSyntaxError(f"Syntax Error: Expected Name, found {text[i:i + 10]!r}.")
            key = m.group()
            i = _skip(text, m.end())
            if i >= len(text) or text[i] != ":":
                raise GraphQLSyntaxError(f'Syntax Error: Expected ":", found {text[i:i + 10]!r}.')
            obj[key], i = parse_value(text, i + 1)
    if ch == "[":
        items = []
        i += 1
        while True:
            i = _skip(text, i)
            if i < len(text) and text[i] == "]":
                return items, i + 1
            item, i = parse_value(text, i)
            items.append(item)
    if ch == '"':
        out = []
        i += 1
        while True:
            if i >= len(text):
                raise GraphQLSyntaxError("Syntax Error: Unterminated string.")
            c = text[i]
            if c == '"':
                return "".join(out), i + 1
            if c in "\r\n":
                raise GraphQLSyntaxError("Syntax Error: Unterminated string.")
            if c == "\\":
                esc = text[i + 1:i + 2]
                if esc == "u":
                    out.append(chr(int(text[i + 2:i + 6], 16)))
                    i += 6
                    continue
                if esc not in _ESCAPES:
                    raise GraphQLSyntaxError(f"Syntax Error: Invalid character escape sequence: \\{esc}.")
                out.append(_ESCAPES[esc])
                i += 2
                continue
            out.append(c)
            i += 1
    m = _NUMBER.match(text, i)
    if m and (ch == "-" or ch.isdigit()):
        raw = m.group()
        return (float(raw) if any(c in raw for c in ".eE") else int(raw)), m.end()
    m = _NAME.match(text, i)
    if m:
        word = m.group()
        return {"true": True, "false": False, "null": None}.get(word, word), m.end()
    raise GraphQLSyntaxError(f"Syntax Error: Unexpected character: {ch!r}.")


def parse_input(text: str, field_name: str) -> dict[str, Any] | None:
    """The `input: {...}` argument of the first `field_name(...)` in a GraphQL text."""
    m = re.search(rf"\b{field_name}\s*\(\s*input\s*:", text)
    if not m:
        return None
    value, end = parse_value(text, m.end())
    if not isinstance(value, dict):
        raise GraphQLSyntaxError("Syntax Error: input must be an object.")
    if not text[_skip(text, end):].startswith(")"):
        raise GraphQLSyntaxError(f'Syntax Error: Expected ")", found {text[end:end + 10]!r}.')
    return value


def _check_balanced(text: str) -> None:
    """Catch what breaks the document outside the input literal (e.g. a quote in a value that
    ends the string early): braces, brackets and parentheses outside strings must balance."""
    depth = 0
    in_string = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
            elif c == "\n":
                raise GraphQLSyntaxError("Syntax Error: Unterminated string.")
        elif c == '"':
            in_string = True
        elif c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
            if depth < 0:
                raise GraphQLSyntaxError(f"Syntax Error: Unexpected {c!r}.")
        i += 1
    if in_string:
        raise GraphQLSyntaxError("Syntax Error: Unterminated string.")
    if depth != 0:
        raise GraphQLSyntaxError("Syntax Error: Expected Name, found <EOF>.")


# Operation name -> how to recognise it in the text. Order matters (pod( after podX).
_OPERATIONS = (
    ("podFindAndDeployOnDemand", re.compile(r"\bpodFindAndDeployOnDemand\s*\(")),
    ("podRentInterruptable", re.compile(r"\bpodRentInterruptable\s*\(")),
    ("podTerminate", re.compile(r"\bpodTerminate\s*\(")),
    ("podStop", re.compile(r"\bpodStop\s*\(")),
    ("podResume", re.compile(r"\bpodResume\s*\(")),
    ("pod", re.compile(r"\bpod\s*\(\s*input")),
    ("gpuTypes", re.compile(r"\bgpuTypes\b")),
    ("myPods", re.compile(r"\bmyself\s*\{[^}]*?\bpods\b", re.S)),
    ("myself", re.compile(r"\bmyself\b")),
)


def operation_of(query: str) -> str:
    for name, pattern in _OPERATIONS:
        if pattern.search(query):
            return name
    return "unknown"


@dataclass
class RecordedRequest:
    path: str
    operation: str
    query: str
    api_key: str | None
    input: dict[str, Any] | None = None
    at: float = field(default_factory=time.time)


@dataclass
class _Fault:
    kind: str
    times: int
    operation: str | None
    options: dict[str, Any]


def _new_pod_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(14))


class FakeRunPodServer:
    """See the module docstring. Thread-safe; use as a context manager or start()/stop()."""

    def __init__(
        self,
        api_key: str = "test-api-key",
        *,
        gpu_types: dict[str, dict[str, Any]] | None = None,
        boot_s: float = 0.0,
        terminate_polls: int = 2,
        clock=time.time,
    ):
        self.api_key = api_key
        self.gpu_types = {k: dict(v) for k, v in (gpu_types or DEFAULT_GPU_TYPES).items()}
        self.boot_s = boot_s
        self.terminate_polls = terminate_polls
        self.clock = clock
        self.pods: dict[str, dict[str, Any]] = {}
        # pod id -> the bill of one pod (kept after the pod is gone, like an invoice).
        self._ledger: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        # GPU types with no capacity: an id (every cloud) or (id, "SECURE"|"COMMUNITY").
        self.sold_out: set[Any] = set()
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "FakeRunPodServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                server._handle(self)

            def log_message(self, format, *args):  # noqa: A002
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-runpod", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeRunPodServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- test controls ------------------------------------------------------------------------

    def fail_next(self, kind: str, *, times: int = 1, operation: str | None = None, **options: Any) -> None:
        """Answer the next `times` requests (of `operation`, if given) with a fault:
        no_capacity | http_500 (status=, body=) | http_401 | delay (seconds=) | drop |
        graphql_error (message=, status=)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append(_Fault(kind, times, operation, options))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.pods.clear()
            self.requests.clear()
            self.sold_out.clear()
            self._ledger.clear()

    def operations(self) -> list[str]:
        with self._lock:
            return [r.operation for r in self.requests]

    def requests_for(self, operation: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.operation == operation]

    def add_pod(self, name: str, *, gpu_type_id: str = "NVIDIA GeForce RTX 4090", spot: bool = False,
                desired_status: str = "RUNNING", env: dict[str, str] | None = None) -> str:
        """Put a pod on the account directly (one we did not create through the API)."""
        with self._lock:
            pod = self._make_pod({"name": name, "gpuTypeId": gpu_type_id, "imageName": "some/image",
                                  "env": [{"key": k, "value": v} for k, v in (env or {}).items()],
                                  "cloudType": "SECURE"}, spot=spot, bid=None)
            pod["desiredStatus"] = desired_status
            return pod["id"]

    def evict(self, pod_id: str) -> None:
        """A spot interruption: the machine is taken back, the pod is stopped (EXITED)."""
        with self._lock:
            pod = self.pods[pod_id]
            pod["desiredStatus"] = "EXITED"
            pod["runtime"] = None
            pod["lastStatusChange"] = f"Exited by RunPod: {self._now_text()}"
            self._bill_end(pod_id)

    # -- the bill -----------------------------------------------------------------------------

    def _bill_end(self, pod_id: str) -> None:
        line = self._ledger.get(pod_id)
        if line is not None and line["end"] is None:
            line["end"] = self.clock()

    def ledger(self, *, now: float | None = None) -> list[dict[str, Any]]:
        """What each pod cost so far: id, name, costPerHr, start, end (None: still billing),
        seconds (whole, rounded up), cost ($, unrounded)."""
        import math  # noqa: PLC0415

        now = self.clock() if now is None else now
        with self._lock:
            lines = []
            for line in self._ledger.values():
                end = line["end"] if line["end"] is not None else now
                seconds = max(0, math.ceil(end - line["start"] - 1e-9))
                lines.append({**line, "seconds": seconds, "cost": seconds * line["costPerHr"] / 3600})
            return lines

    def ledger_total(self, name_part: str = "", *, now: float | None = None) -> float:
        """The bill of every pod whose name contains `name_part` (a job's uuid: all its pods)."""
        return sum(line["cost"] for line in self.ledger(now=now) if name_part in line["name"])

    def pod_env(self, pod_id: str) -> dict[str, str]:
        with self._lock:
            return dict(item.split("=", 1) for item in self.pods[pod_id]["env"])

    # -- request handling ---------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        url = urlsplit(handler.path)
        auth = handler.headers.get("Authorization", "")
        api_key = auth[7:] if auth.startswith("Bearer ") else parse_qs(url.query).get("api_key", [None])[0]
        try:
            query = json.loads(raw or b"{}").get("query", "")
        except ValueError:
            query = ""
        operation = operation_of(query)
        record = RecordedRequest(path=url.path, operation=operation, query=query, api_key=api_key)
        with self._lock:
            self.requests.append(record)
            fault = self._take_fault(operation)

        try:
            if fault is not None:
                if fault.kind == "delay":
                    time.sleep(float(fault.options.get("seconds", 1.0)))
                elif fault.kind == "drop":
                    handler.close_connection = True
                    return
                elif fault.kind == "http_500":
                    body = fault.options.get(
                        "body", "<html><head><title>500 Internal Server Error</title></head>"
                        "<body><h1>Internal Server Error</h1></body></html>")
                    self._send(handler, int(fault.options.get("status", 500)), body.encode(), "text/html")
                    return
                elif fault.kind == "http_401":
                    self._send_json(handler, 401, {"errors": [{"message": "Unauthorized"}]})
                    return
                elif fault.kind == "no_capacity":
                    self._send_json(handler, 200, {"errors": [{"message": NO_CAPACITY_MESSAGE, "path": [operation]}],
                                                   "data": {operation: None}})
                    return
                elif fault.kind == "graphql_error":
                    self._send_json(handler, int(fault.options.get("status", 200)),
                                    {"errors": [{"message": fault.options.get("message", INTERNAL_ERROR_MESSAGE)}]})
                    return

            if url.path != "/graphql":
                self._send(handler, 404, b"Not Found", "text/plain")
                return
            if api_key != self.api_key:
                self._send_json(handler, 401, {"errors": [{"message": "Unauthorized"}]})
                return
            try:
                _check_balanced(query)
                status, payload = self._execute(operation, query, record)
            except GraphQLSyntaxError as exc:
                status, payload = 400, {"errors": [{"message": str(exc)}]}
            self._send_json(handler, status, payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)

    def _take_fault(self, operation: str) -> _Fault | None:
        for fault in self._faults:
            if fault.operation in (None, operation):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _send_json(self, handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        self._send(handler, status, json.dumps(payload).encode(), "application/json")

    # -- the API ------------------------------------------------------------------------------

    def _execute(self, operation: str, query: str, record: RecordedRequest) -> tuple[int, dict]:
        with self._lock:
            if operation in ("podFindAndDeployOnDemand", "podRentInterruptable"):
                data = parse_input(query, operation) or {}
                record.input = data
                return self._deploy(operation, data)
            if operation == "podTerminate":
                data = parse_input(query, operation) or {}
                record.input = data
                pod = self.pods.get(data.get("podId"))
                if pod is None:
                    return 200, {"errors": [{"message": "pod not found"}], "data": {"podTerminate": None}}
                pod["desiredStatus"] = "TERMINATED"
                pod["runtime"] = None
                pod["_polls_left"] = self.terminate_polls
                self._bill_end(pod["id"])
                if self.terminate_polls <= 0:
                    del self.pods[pod["id"]]
                return 200, {"data": {"podTerminate": None}}
            if operation in ("podStop", "podResume"):
                data = parse_input(query, operation) or {}
                record.input = data
                pod = self.pods.get(data.get("podId"))
                if pod is None:
                    return 200, {"errors": [{"message": "pod not found"}], "data": {operation: None}}
                pod["desiredStatus"] = "EXITED" if operation == "podStop" else "RUNNING"
                if operation == "podStop":
                    self._bill_end(pod["id"])
                return 200, {"data": {operation: self._public(pod)}}
            if operation == "pod":
                data = parse_input(query, "pod") or {}
                record.input = data
                pod = self.pods.get(data.get("podId"))
                if pod is not None and pod["desiredStatus"] == "TERMINATED":
                    pod["_polls_left"] -= 1
                    if pod["_polls_left"] < 0:
                        del self.pods[pod["id"]]
                        pod = None
                return 200, {"data": {"pod": self._public(pod) if pod else None}}
            if operation == "myPods":
                pods = [self._public(p) for p in self.pods.values()]
                return 200, {"data": {"myself": {"pods": pods}}}
            if operation == "myself":
                return 200, {"data": {"myself": {"id": "user-1", "pubKey": "", "networkVolumes": []}}}
            if operation == "gpuTypes":
                data = parse_input(query, "gpuTypes")
                record.input = data
                count_input = parse_input(query, "lowestPrice") or {}
                gpu_count = int(count_input.get("gpuCount", 1))
                ids = [data["id"]] if data and data.get("id") else list(self.gpu_types)
                types = [self._gpu_type(i, gpu_count) for i in ids if i in self.gpu_types]
                return 200, {"data": {"gpuTypes": types}}
        return 400, {"errors": [{"message": "Cannot query field: the fake RunPod server does not know this operation."}]}

    def _gpu_type(self, gpu_id: str, gpu_count: int) -> dict[str, Any]:
        g = self.gpu_types[gpu_id]
        return {
            "id": gpu_id,
            "displayName": g["displayName"],
            "manufacturer": "Nvidia",
            "memoryInGb": g["memoryInGb"],
            "cudaCores": 0,
            "maxGpuCount": 8,
            "secureCloud": True,
            "communityCloud": True,
            "securePrice": g["securePrice"],
            "communityPrice": g["communityPrice"],
            "secureSpotPrice": g["secureSpotPrice"],
            "communitySpotPrice": g["communitySpotPrice"],
            "oneWeekPrice": g["securePrice"],
            "oneMonthPrice": g["securePrice"],
            "threeMonthPrice": g["securePrice"],
            "lowestPrice": {
                "gpuCount": gpu_count,
                "minimumBidPrice": g["minimumBidPrice"],
                "uninterruptablePrice": min(g["securePrice"], g["communityPrice"]),
            },
        }

    def _deploy(self, operation: str, data: dict[str, Any]) -> tuple[int, dict]:
        gpu = data.get("gpuTypeId")
        cloud = data.get("cloudType", "ALL")
        if gpu not in self.gpu_types:
            return 200, {"errors": [{"message": f"GPU type {gpu} not found"}], "data": {operation: None}}
        clouds = ("SECURE", "COMMUNITY") if cloud == "ALL" else (cloud,)
        if gpu in self.sold_out or all((gpu, c) in self.sold_out for c in clouds):
            return 200, {"errors": [{"message": NO_CAPACITY_MESSAGE, "path": [operation]}], "data": {operation: None}}
        spot = operation == "podRentInterruptable"
        if spot and data.get("bidPerGpu") is None:
            return 400, {"errors": [{"message": 'Field "bidPerGpu" of required type "Float!" was not provided.'}]}
        pod = self._make_pod(data, spot=spot, bid=data.get("bidPerGpu"))
        public = self._public(pod)
        answer = {k: public[k] for k in ("id", "imageName", "env", "machineId", "desiredStatus")}
        answer["machine"] = {"podHostId": f"{pod['id']}-64410f1a"}
        return 200, {"data": {operation: answer}}

    def _make_pod(self, data: dict[str, Any], *, spot: bool, bid: float | None) -> dict[str, Any]:
        gpu = data.get("gpuTypeId", "")
        g = self.gpu_types.get(gpu, {"securePrice": 1.0, "communityPrice": 1.0, "displayName": gpu})
        count = int(data.get("gpuCount") or 1)
        cloud = data.get("cloudType", "ALL")
        price = g["communityPrice"] if cloud == "COMMUNITY" else g["securePrice"]
        pod_id = _new_pod_id()
        pod = {
            "id": pod_id,
            "name": data.get("name", ""),
            "imageName": data.get("imageName", ""),
            "env": [f"{e['key']}={e['value']}" for e in data.get("env") or []],
            "gpuCount": count,
            "containerDiskInGb": data.get("containerDiskInGb"),
            "volumeInGb": data.get("volumeInGb", 0),
            "volumeMountPath": data.get("volumeMountPath", "/runpod-volume"),
            "costPerHr": round((bid if spot else price) * count, 4),
            "desiredStatus": "RUNNING",
            "podType": "INTERRUPTABLE" if spot else "RESERVED",
            "lastStatusChange": f"Rented by User: {self._now_text()}",
            "machineId": "m-" + pod_id[:8],
            "machine": {"gpuDisplayName": g["displayName"]},
            "runtime": None,
            "_created": self.clock(),
            "_gpu_type_id": gpu,
            "_cloud_type": cloud,
            "_polls_left": 0,
        }
        self.pods[pod_id] = pod
        self._ledger[pod_id] = {"pod_id": pod_id, "name": pod["name"], "costPerHr": pod["costPerHr"],
                                "start": pod["_created"], "end": None}
        return pod

    def _public(self, pod: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        if pod["desiredStatus"] == "RUNNING" and now - pod["_created"] >= self.boot_s:
            # RunPod's uptime counts from the rent while the pod runs (what it bills).
            pod["runtime"] = {"uptimeInSeconds": int(now - pod["_created"]), "ports": [], "gpus": []}
        public = {k: v for k, v in pod.items() if not k.startswith("_")}
        public.update({
            "dockerArgs": "", "dockerId": None, "memoryInGb": 62, "vcpuCount": 8, "port": None,
            "ports": "", "uptimeSeconds": 0,
        })
        return public

    def _now_text(self) -> str:
        # The shape RunPod uses in lastStatusChange, e.g. "Fri Jan 12 2024 10:00:00 GMT+0000 (...)".
        return time.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", time.gmtime(self.clock()))
