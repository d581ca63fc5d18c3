"""The control-plane image's file set, built the way the Dockerfile builds it, starts.

Docker does not run here, so the test does what the Dockerfile does, step by step: copy exactly
its COPY list into an empty folder, `pip install .` that folder (into a target folder, without
dependencies or network: they are this venv's), then run the image's steps with production
settings on PostgreSQL: `check --deploy`, `migrate` (a scratch database), `collectstatic`, and
serve /healthz with daphne from the installed package (not from the checkout).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import REPO_ROOT
from tests.net_support import free_port

pytestmark = pytest.mark.slow


def dockerfile_copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY instruction, in order."""
    copies = []
    for line in dockerfile.read_text().splitlines():
        line = line.strip()
        if not line.upper().startswith("COPY "):
            continue
        parts = [p for p in line.split()[1:] if not p.startswith("--")]
        copies.append((parts[:-1], parts[-1]))
    return copies


def local_apps() -> list[str]:
    from django.conf import settings

    return [app for app in settings.INSTALLED_APPS if "." not in app and (REPO_ROOT / app / "apps.py").exists()]


def test_every_app_is_in_the_image_and_the_package():
    copied = {src.rstrip("/") for sources, _ in dockerfile_copies(REPO_ROOT / "Dockerfile") for src in sources}
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    include = re.search(r"\[tool\.setuptools\.packages\.find\]\s*(?:#.*\n)*include\s*=\s*\[(.*?)\]", pyproject, re.S)
    assert include, "pyproject.toml has no [tool.setuptools.packages.find] include list"
    packaged = {name.strip().strip('"').rstrip("*") for name in include.group(1).split(",") if name.strip()}
    for app in [*local_apps(), "config", "gpu_worker"]:
        assert app in copied, f"the Dockerfile does not COPY {app}/"
        assert app in packaged, f"pyproject.toml's packages.find does not include {app}"


def _scratch_database(url: str, name: str) -> str:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path="/" + name))


def _drop_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')


def test_image_file_set_installs_and_serves_in_production(tmp_path):
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        pytest.skip("needs DATABASE_URL pointing at PostgreSQL (make test sets it)")
    app_dir, site, var, elsewhere = (tmp_path / d for d in ("app", "site", "var", "elsewhere"))
    for d in (app_dir, elsewhere):
        d.mkdir()
    # COPY, exactly as listed.
    for sources, dest in dockerfile_copies(REPO_ROOT / "Dockerfile"):
        for src in sources:
            path = REPO_ROOT / src
            assert path.exists(), f"the Dockerfile copies {src}, which does not exist"
            # COPY dir ./dir copies the folder's content there; COPY file ./ puts the file in ./
            target = app_dir / dest / path.name if dest.endswith("/") else app_dir / dest
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "pip install ." in dockerfile
    # RUN pip install . (the dependencies are this venv's; nothing is downloaded).
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), "."], cwd=app_dir, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "dashboard" / "static" / "dashboard" / "app.css").exists(), "static files are not packaged"

    db_url = _scratch_database(base_url, f"{urlsplit(base_url).path.lstrip('/') or 'brightrun'}_image")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE", "PYTHONPATH"))}
    env.update({"DEPLOYMENT": "production", "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
                "DJANGO_ALLOWED_HOSTS": "brightrun.example.com,127.0.0.1", "DATABASE_URL": db_url,
                "DATABASE_CONN_MAX_AGE": "0", "BRIGHTRUN_VAR_DIR": str(var), "STORAGE_BACKEND": "disk",
                "DJANGO_SETTINGS_MODULE": "config.settings"})
    installed = {**env, "PYTHONPATH": str(site)}

    def run(argv, cwd, environ):
        out = subprocess.run(argv, cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{' '.join(argv)}:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    try:
        # The Dockerfile's build step and the image's commands, run from /app as the image does.
        run([sys.executable, "manage.py", "collectstatic", "--noinput"], app_dir, env)
        assert (var / "static" / "dashboard" / "app.css").exists()
        assert "no issues" in run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                                  app_dir, env)
        run([sys.executable, "manage.py", "migrate", "--noinput"], app_dir, env)

        # The installed package alone (outside the copied tree) is complete.
        where = run([sys.executable, "-c", "import config, accounts, training, billing, validation, artifacts, "
                     "finetuning, dashboard, gpu_worker, sys; "
                     "print('\\n'.join(m.__file__ for m in (config, finetuning, dashboard)))"],
                    elsewhere, installed)
        assert all(line.startswith(str(site)) for line in where.split()), where
        assert "no issues" in run([sys.executable, "-m", "django", "check", "--deploy", "--fail-level", "WARNING"],
                                  elsewhere, installed)

        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port),
                                   "config.asgi:application"], cwd=elsewhere, env=installed,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            body = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
                        body = resp.read().decode()
                        status = resp.status
                    break
                except urllib.error.HTTPError as exc:
                    body, status = exc.read().decode(), exc.code
                    break
                except OSError:
                    time.sleep(0.3)
            assert body is not None, f"daphne did not answer: {server.stdout.read().decode() if server.poll() is not None else ''}"
            assert status == 200 and '"status": "ok"' in body, body
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
    finally:
        _drop_database(db_url)


def test_compose_runs_production_settings_and_durable_redis():
    import yaml

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("migrate", "web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DEPLOYMENT"] == "production", name
        assert "DJANGO_SECRET_KEY" in env, name
    for name in ("web", "worker", "beat", "redis", "postgres"):
        assert services[name].get("restart") in {"unless-stopped", "always"}, f"{name} has no restart policy"
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendfsync") + 1] == "always"
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
