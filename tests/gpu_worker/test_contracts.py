"""The pod's event payloads (gpu_worker.contracts.PAYLOADS): what the pod sends parses into its
dataclass, the older spellings the control plane still accepts resolve in one place, and a payload
that does not fit says which field."""
import math

import pytest

from gpu_worker import contracts
from gpu_worker.contracts import PodEvent


def _event(type_, data, step=0):
    return PodEvent(event_id="e", job_id="j", attempt=1, seq=1, type=type_, timestamp=0.0, step=step, data=data)


def test_every_event_type_has_a_payload_and_an_empty_one_parses_where_fields_are_optional():
    assert set(contracts.PAYLOADS) == set(contracts.EVENT_TYPES)
    for type_ in contracts.EVENT_TYPES:
        if type_ != contracts.EVENT_METRICS:
            assert isinstance(_event(type_, {}).payload, contracts.PAYLOADS[type_])


def test_metrics_single_and_batched():
    single = _event("metrics", {"loss": 1.5, "epoch": 0.5, "unknown": "kept in data only"}, step=4).payload
    assert single.points == ((4, {"loss": 1.5, "epoch": 0.5}),)
    batch = _event("metrics", {"points": [{"step": 1, "loss": 2.0, "seq": 1}, {"step": 2, "loss": 1.0},
                                          {"step": 1, "loss": 1.9}], "total_steps": 10}).payload
    # A step twice in one batch keeps its last values; the order of first appearance stays.
    assert batch.points == ((1, {"loss": 1.9}), (2, {"loss": 1.0})) and batch.total_steps == 10
    with pytest.raises(contracts.PayloadError, match=r"data.points\[1\].step is missing"):
        _event("metrics", {"points": [{"step": 1}, {"loss": 1.0}]}).payload


def test_checkpoint_step_defaults_to_the_events_and_a_non_finite_loss_is_none():
    saved = _event("checkpoint_saved", {"uri": "file:///c", "bytes": 12, "valid_loss": math.inf}, step=7).payload
    assert (saved.step, saved.uri, saved.bytes, saved.valid_loss, saved.epoch) == (7, "file:///c", 12, None, None)


@pytest.mark.parametrize("data", [
    {"artifacts": {"adapter_uri": "file:///a"}},  # what gpu_worker.runner sends
    {"adapter_uri": "file:///a"},                 # older spellings
    {"artifacts": {"adapter": "file:///a"}},
])
def test_completed_adapter_uri_is_resolved_once(data):
    done = _event("completed", {**data, "final_metrics": {"step": 5, "total_steps": 6}}).payload
    assert (done.adapter_uri, done.final_step, done.total_steps) == ("file:///a", 5, 6)
    assert done.result == {**data, "final_metrics": {"step": 5, "total_steps": 6}}


def test_failed_and_interrupted_defaults():
    assert _event("failed", {}).payload == contracts.FailedPayload(error_class="unknown")
    stopped = _event("interrupted", {"checkpoint_uri": "file:///c", "checkpoint_step": 40, "reason": "sigterm"}).payload
    assert (stopped.checkpoint_uri, stopped.checkpoint_step, stopped.reason) == ("file:///c", 40, "sigterm")
    assert _event("interrupted", {"checkpoint_uri": None}).payload.checkpoint_uri is None


def test_the_payload_is_parsed_once():
    event = _event("log", {"level": "warning", "message": "slow disk"})
    assert event.payload is event.payload and event.payload == contracts.LogPayload("warning", "slow disk")
    assert "_payload" not in event.to_dict()  # the wire format is unchanged
