"""manage.py import_dataset: human output, --json, and non-zero exit with the error on stderr."""
import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.django_db


def test_json_output(real_file):
    out = StringIO()
    call_command("import_dataset", str(real_file), "--json", "--val-fraction", "0.1", "--seed", "5", stdout=out)
    payload = json.loads(out.getvalue())
    for key in ("dataset_id", "conversations", "pairs", "trainable_turns", "skipped", "train_conversations",
                "val_conversations", "tokens"):
        assert key in payload
    assert (payload["conversations"], payload["pairs"], payload["trainable_turns"]) == (72, 447, 212)
    assert sum(payload["skipped"].values()) == 235
    assert payload["train_conversations"] + payload["val_conversations"] == 72


def test_human_output(sample_file):
    out = StringIO()
    call_command("import_dataset", str(sample_file), stdout=out)
    text = out.getvalue()
    assert "Imported" in text and "trainable turns" in text and "tokens per epoch" in text


def test_bad_file_raises_command_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"training_file_metadata": {"format_spec": "nope"}}')
    with pytest.raises(CommandError, match=r"format_spec"):
        call_command("import_dataset", str(bad))


@pytest.mark.slow
def test_exit_code_and_stderr_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    env = {**os.environ, "BRIGHTRUN_VAR_DIR": str(tmp_path / "var")}
    env.pop("DATABASE_URL", None)  # the embedded default: SQLite in the temp var dir
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_ROOT, env=env, check=True)
    proc = subprocess.run([sys.executable, "manage.py", "import_dataset", str(bad), "--json"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "line 1" in proc.stderr and "no assistant message" in proc.stderr
    assert proc.stdout == ""
