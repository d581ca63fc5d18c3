"""The embedded default (SQLite, embedded Redis, disk storage) and the control plane without torch."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT, SAMPLE_FILE


def _clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CHANNEL_LAYER_URL", "STORAGE_BACKEND",
                        "DJANGO_SETTINGS_MODULE"}}
    env["BRIGHTRUN_VAR_DIR"] = str(tmp_path / "var")
    return env


@pytest.mark.slow
def test_embedded_default_is_healthy(tmp_path):
    """No variable set: SQLite, the embedded Redis (broker and channel layer), storage on disk."""
    script = textwrap.dedent("""
        import json, django, os
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from config import embedded, health
        assert settings.EMBEDDED_DATABASE and settings.EMBEDDED_REDIS
        call_command("migrate", verbosity=0)
        started = embedded.ensure_running()
        try:
            print(json.dumps({"started": started, "checks": health.run_checks(),
                              "engine": settings.DATABASES["default"]["ENGINE"],
                              "broker": settings.CELERY_BROKER_URL}))
        finally:
            embedded.stop()
        print(json.dumps({"after_stop": embedded.is_running()}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=_clean_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, second = [json.loads(line) for line in proc.stdout.strip().splitlines()[-2:]]
    assert first["started"] is True
    assert first["engine"].endswith("sqlite3")
    assert first["broker"].startswith("redis+socket://")
    assert {k: v["status"] for k, v in first["checks"].items()} == {
        "database": "ok", "broker": "ok", "channel_layer": "ok", "storage": "ok"}, first["checks"]
    assert second["after_stop"] is False


BLOCK_TORCH = textwrap.dedent("""
    import sys, importlib.abc
    BLOCKED = {"torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "tokenizers", "safetensors"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the control plane must run without the train extra")
    sys.meta_path.insert(0, Block())
""")


@pytest.mark.slow
def test_control_plane_runs_without_torch(tmp_path):
    script = BLOCK_TORCH + textwrap.dedent(f"""
        import os, django, importlib, pkgutil
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
        from django.core.management import call_command
        call_command("check")
        call_command("migrate", verbosity=0)
        # Every control-plane module imports.
        for pkg in ("config", "accounts", "training", "billing", "validation", "artifacts"):
            mod = importlib.import_module(pkg)
            for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
                if ".migrations." in info.name or info.name.endswith(".migrations"):
                    continue
                importlib.import_module(info.name)
        import gpu_worker.contracts, gpu_worker.signing
        call_command("import_dataset", {str(SAMPLE_FILE)!r}, "--json")
        assert "torch" not in sys.modules
        print("NO_TORCH_OK")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=_clean_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NO_TORCH_OK" in proc.stdout
    payload = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][0])
    assert payload["tokens"]["method"] == "estimate"  # no tokenizer library: says it is an estimate
