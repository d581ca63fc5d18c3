"""The LLM judge against a local fake OpenAI-compatible server (http.server on 127.0.0.1)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


from validation.judges import JudgeItem, LLMJudge
from validation.rubric import CRITERION_IDS, build_rubric

WARM = "I hear how stressful this is. You're not alone. Shall I explain? One small step: list your $8,400 balance."
CURT = "Pay off the cards."


class FakeJudgeServer:
    """Answers /v1/chat/completions with whatever `behaviour(request_json)` returns: a dict (sent as
    the assistant's JSON content), a str (sent as raw content) or an (status, body) tuple."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                answer = server.behaviour(body)
                if isinstance(answer, tuple):
                    status, payload = answer
                    data = json.dumps(payload).encode()
                else:
                    status = 200
                    content = answer if isinstance(answer, str) else json.dumps(answer)
                    data = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
                    ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _is_pairwise(body):
    return body["response_format"].get("json_schema", {}).get("name") == "pairwise_preference" or \
        "Reply A:" in body["messages"][-1]["content"]


def _reply_under_review(body):
    return body["messages"][-1]["content"].split("<<<\n", 1)[1].split("\n>>>", 1)[0]


def _sensible(body):
    """A judge that prefers the warm reply wherever it is shown and scores it high."""
    text = body["messages"][-1]["content"]
    if _is_pairwise(body):
        a = text.split("Reply A:\n<<<\n", 1)[1].split("\n>>>", 1)[0]
        return {"preferred": "A" if a == WARM else "B", "reason": "warmer"}
    good = _reply_under_review(body) == WARM
    return {"scores": {c: 5 if good else 1 for c in CRITERION_IDS}, "on_voice": good, "reason": "."}


def _judge(server, **kw):
    kw.setdefault("max_retries", 2)
    return LLMJudge(base_url=server.base_url, model="judge-model", api_key="sk-test-secret",
                    rubric=build_rubric(None), timeout=10, retry_backoff=0, **kw)


def test_scores_pointwise_and_pairwise_with_structured_output():
    with FakeJudgeServer(_sensible) as server:
        result = _judge(server).score([JudgeItem("i1", "I'm embarrassed about my cards.", CURT, WARM,
                                                 context=({"role": "user", "content": "hi"},))])
    adapted = result.scores_for("adapted")["i1"]
    base = result.scores_for("base")["i1"]
    assert adapted.criteria == {c: 1.0 for c in CRITERION_IDS} and adapted.on_voice is True
    assert base.criteria == {c: 0.0 for c in CRITERION_IDS} and base.on_voice is False
    assert result.pairwise[0].winner == "adapted" and result.pairwise[0].details["consistent"] is True
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test-secret"
    assert first["body"]["model"] == "judge-model" and first["body"]["temperature"] == 0.0
    assert first["body"]["response_format"]["type"] == "json_schema"
    assert len(server.requests) == 4  # 2 replies + 2 pairwise orders
    dumped = json.dumps(result.to_dict())
    assert "sk-test-secret" not in dumped and "sk-test-secret" not in repr(_judge(server))


def test_position_bias_cancels_into_ties():
    always_a = lambda body: ({"preferred": "A", "reason": "first"} if _is_pairwise(body)  # noqa: E731
                             else {"scores": {c: 3 for c in CRITERION_IDS}, "on_voice": True, "reason": "."})
    with FakeJudgeServer(always_a) as server:
        result = _judge(server).score([JudgeItem(f"i{n}", "help", CURT, WARM) for n in range(3)])
    assert [p.winner for p in result.pairwise] == ["tie", "tie", "tie"]
    assert all(p.details["consistent"] is False for p in result.pairwise)
    orders = [r["body"]["messages"][-1]["content"] for r in server.requests if _is_pairwise(r["body"])]
    assert sum(o.index(WARM) < o.index(CURT) for o in orders) == 3  # each order shown once per item


def test_malformed_output_is_retried_then_reported_not_computed():
    calls = {"n": 0}

    def flaky(body):
        if _is_pairwise(body):
            return "I think A is better"  # never JSON
        calls["n"] += 1
        if _reply_under_review(body) == WARM and calls["n"] <= 2:
            return "```json\n{\"scores\": {\"feelings_first\": 9}}\n```"  # wrong shape: retried
        return _sensible(body)

    with FakeJudgeServer(flaky) as server:
        result = _judge(server, max_workers=1).score([JudgeItem("i1", "help", CURT, WARM)])
    adapted = result.scores_for("adapted")["i1"]
    assert adapted.computed and adapted.details["attempts"] >= 2  # recovered on a retry
    pair = result.pairwise[0]
    assert pair.winner is None and pair.outcome is None
    assert "after 3 attempts" in pair.not_computed and "malformed" in pair.not_computed
    pairwise_calls = [r for r in server.requests if _is_pairwise(r["body"])]
    assert len(pairwise_calls) == 3  # 1 try + 2 retries, then it gave up on that order


def test_always_malformed_reply_scores_are_not_computed_never_zero():
    with FakeJudgeServer(lambda body: {"scores": "great", "on_voice": "yes"}) as server:
        result = _judge(server, max_retries=1).score([JudgeItem("i1", "help", CURT, WARM)])
    for r in result.replies:
        assert not r.computed and r.criteria == {} and r.on_voice is None
        assert "after 2 attempts" in r.not_computed


def test_json_schema_rejected_falls_back_to_json_object():
    def old_server(body):
        if body["response_format"]["type"] == "json_schema":
            return 400, {"error": {"message": "response_format json_schema not supported"}}
        return _sensible(body)

    with FakeJudgeServer(old_server) as server:
        result = _judge(server, max_workers=1).score([JudgeItem("i1", "help", CURT, WARM)])
    assert result.scores_for("adapted")["i1"].computed
    assert result.settings["response_format"] == "json_object"


def test_bad_key_stops_the_run_with_a_clear_reason():
    with FakeJudgeServer(lambda body: (401, {"error": "invalid api key"})) as server:
        result = _judge(server, max_workers=1).score([JudgeItem(f"i{n}", "help", CURT, WARM) for n in range(3)])
        assert len(server.requests) == 1  # no point asking again
    reasons = {r.not_computed for r in result.replies} | {p.not_computed for p in result.pairwise}
    assert len(reasons) == 1 and "HTTP 401" in reasons.pop()


def test_unreachable_endpoint_is_not_computed():
    judge = LLMJudge(base_url="http://127.0.0.1:9/v1", model="m", timeout=0.5, max_retries=0, retry_backoff=0)
    result = judge.score([JudgeItem("i1", "help", CURT, WARM)])
    assert all(not r.computed and "request failed" in r.not_computed for r in result.replies)
