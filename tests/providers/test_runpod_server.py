"""The fake server's GraphQL literal parser against the SDK's own mutation text."""
from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_worker.contracts import JobSpec
from tests.fakes.runpod_server import GraphQLSyntaxError, operation_of, parse_input


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(note=st.text(), key=st.text(alphabet=string.ascii_letters, min_size=1, max_size=8))
def test_any_spec_survives_the_sdk_mutation_text(runpod_sdk, note, key):
    from runpod.api.mutations.pods import generate_pod_deployment_mutation

    spec = JobSpec(job_id="j", attempt=1, base_model="m", train_uri="t", val_uri=None, output_uri="o",
                   test_hooks={key: note})
    text = generate_pod_deployment_mutation("brightrun-j-1", "img", "NVIDIA A40", env={"SPEC": spec.to_env_value()})
    data = parse_input(text, "podFindAndDeployOnDemand")
    assert operation_of(text) == "podFindAndDeployOnDemand"
    assert JobSpec.from_env_value(data["env"][0]["value"]) == spec


def test_raw_quotes_and_newlines_break_the_sdk_mutation_text(runpod_sdk):
    from runpod.api.mutations.pods import generate_pod_deployment_mutation

    for raw in ('{"a": 1}', "line one\nline two"):
        text = generate_pod_deployment_mutation("n", "img", "NVIDIA A40", env={"SPEC": raw})
        with pytest.raises(GraphQLSyntaxError):
            parse_input(text, "podFindAndDeployOnDemand")


def test_operations_are_recognised(runpod_sdk):
    from runpod.api.mutations.pods import generate_pod_terminate_mutation
    from runpod.api.queries.gpus import QUERY_GPU_TYPES, generate_gpu_query
    from runpod.api.queries.pods import QUERY_POD, generate_pod_query

    assert operation_of(QUERY_POD) == "myPods"
    assert operation_of(generate_pod_query("abc")) == "pod"
    assert operation_of(generate_pod_terminate_mutation("abc")) == "podTerminate"
    assert operation_of(QUERY_GPU_TYPES) == operation_of(generate_gpu_query("x")) == "gpuTypes"
    assert parse_input(generate_gpu_query("NVIDIA A40", 4), "lowestPrice") == {"gpuCount": 4}
