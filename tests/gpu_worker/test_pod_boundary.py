"""The pod image copies only gpu_worker/ (gpu_worker/Dockerfile): nothing in gpu_worker may import
Django or one of the control plane's apps, at module level or inside a function."""
import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

GPU_WORKER = Path(REPO_ROOT) / "gpu_worker"


def _control_plane_packages() -> set[str]:
    root = Path(REPO_ROOT)
    apps = {p.parent.name for p in root.glob("*/apps.py")}
    return apps | {"config", "django", "rest_framework", "channels", "celery", "django_celery_beat"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def test_gpu_worker_imports_no_control_plane_package():
    forbidden = _control_plane_packages()
    assert {"validation", "training", "django"} <= forbidden
    files = sorted(GPU_WORKER.rglob("*.py"))
    assert any(p.name == "pod_eval.py" for p in files)
    offenders = [f"{p.relative_to(REPO_ROOT)}:{line} imports {name}" for p in files for line, name in _imports(p)
                 if name.split(".")[0] in forbidden]
    assert not offenders, "the pod image copies only gpu_worker/:\n" + "\n".join(offenders)


def test_pod_image_copies_only_gpu_worker():
    dockerfile = (GPU_WORKER / "Dockerfile").read_text(encoding="utf-8")
    copies = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert copies == ["gpu_worker/"], copies


def test_shipped_evaluation_sets_live_in_gpu_worker():
    from gpu_worker.evaluation.datasets import EMOTIONS_FILE, KNOWLEDGE_FILE

    assert GPU_WORKER in KNOWLEDGE_FILE.parents and KNOWLEDGE_FILE.is_file()
    assert GPU_WORKER in EMOTIONS_FILE.parents and EMOTIONS_FILE.is_file()
