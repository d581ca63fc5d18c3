"""The response-quality rubric: criteria drawn from the consultant profile and the dataset's quality
criteria, and rule-based detectors that score a reply on each criterion in [0, 1].

The detectors are deliberately simple, documented regular expressions (listed below and in
docs/validation.md). They are a transparent automatic proxy, not a judgment of quality: a reply can
game them, and a good reply can phrase things they do not know. The LLM judge reads the same
criteria as text.

Criteria (id: what earns the score):
- feelings_first: names or validates the client's feelings in the first two sentences, before the
  first number (1.0); acknowledges feelings only later (0.5); never (0.0).
- judgment_free: explicitly normalizes ("you're not alone", "very common", "completely
  understandable") with no judgmental phrase (1.0); neither (0.5); any judgmental phrase (0.0).
- specific_numbers: concrete figures ($ amounts, percentages, ages, counts of months, ...): two or
  more (1.0), one (0.5), none (0.0). List markers and account names (401(k), 529) do not count.
- asks_permission: asks before teaching ("Would it help if I walk you through...?", "Shall I
  explain...?", "if you're open to it") (1.0) or not (0.0).
- single_clear_step: names one concrete next step ("one small step", "this week", "start by")
  (1.0) or not (0.4); halved when the reply lists more than three items or three options.
- avoids_avoid_list: 1 - (violated avoid rules / avoid rules with a detector). Each item of the
  profile's avoid-list (and each "never X" in its tone) is matched by keyword to a detector:
  unexplained jargon, assumed knowledge, judgment, too many options, empty reassurance,
  condescension. Items no detector covers are listed in `Rubric.unmatched_avoid` and left to the
  LLM judge.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------- patterns

_I = re.IGNORECASE
_APOS = "['’]"

EMOTION_ACK = [
    re.compile(r"\bI (can )?(hear|see|understand|sense|get)( how| that| why| what)?\b", _I),
    re.compile(rf"\b(it|that|this){_APOS}?s?( is)? (completely |totally |so |really |perfectly |very )?"
               r"(understandable|natural|normal|okay|ok|valid|hard|heavy|a lot|scary|stressful|frustrating|"
               r"exhausting|overwhelming|painful|tough|difficult)\b", _I),
    re.compile(r"\bmakes (complete |total |perfect )?sense\b", _I),
    re.compile(r"\b(feel|feels|feeling|feelings|felt)\b", _I),
    re.compile(r"\b(stress(ed|ful)?|anxi(ous|ety)|worr(y|ied|ies|ying)|fear(s|ful)?|scar(ed|y)|overwhelm(ed|ing)?|"
               r"frustrat(ed|ing|ion)|ashamed|shame|embarrass(ed|ing|ment)|guilt(y)?|reliev(ed)|relief|"
               r"exhaust(ed|ing)|nervous|upset|hurt|tension|afraid|heavy)\b", _I),
    re.compile(r"\bthank you for (sharing|telling|trusting|being (so )?honest|opening up)\b", _I),
    re.compile(r"\b(took (real )?courage|brave)\b", _I),
]

NORMALIZING = [
    re.compile(rf"\byou{_APOS}?(re| are) (definitely |absolutely |far |really |so |not the only one|certainly )?not alone\b", _I),
    re.compile(r"\b(very|so|incredibly|really|extremely|quite|more|remarkably|super) common\b", _I),
    re.compile(r"\b(many|most|lots of|plenty of|so many) (people|families|couples|clients|professionals|households|of us)\b", _I),
    re.compile(r"\b(completely|totally|perfectly|entirely|so) (normal|natural|understandable|human|reasonable)\b", _I),
    re.compile(r"\bno (shame|judgment|judgement)\b|\bnothing to be ashamed\b|\bnot a (character )?flaw\b", _I),
    re.compile(r"\b(fixable|solvable|recoverable)\b", _I),
    re.compile(r"\bthis happens\b|\bhappens to (a lot of|many|most|everyone)\b", _I),
    re.compile(r"\bmakes (complete |total |perfect )?sense\b", _I),
]

JUDGMENTAL = [
    re.compile(rf"\byou (really |clearly |honestly )?(should|shouldn{_APOS}t|should not|ought to) have\b", _I),
    re.compile(rf"\bwhy (did|didn{_APOS}t|would|wouldn{_APOS}t) you\b", _I),
    re.compile(r"\b(irresponsib\w*|reckless\w*|careless\w*|foolish\w*|stupid\w*|lazy|naive|immature|dumb)\b", _I),
    re.compile(r"\b(bad|terrible|awful|poor) (with money|decisions?|choices?|habits?|planning)\b", _I),
    re.compile(r"\b(big|huge|serious|classic|rookie|costly) mistakes?\b|\byour mistakes?\b", _I),
    re.compile(r"\bwhat were you thinking\b|\bshould have known\b|\bno excuse\b|\byou wasted\b", _I),
    re.compile(r"\byou (need to|have to|must) (stop|get (it |your act )?together|grow up|be more responsible)\b", _I),
]

NUMBER = re.compile(r"(?<![\w.])\$?\d[\d,]*(\.\d+)?(%|k\b)?", _I)
LIST_MARKER = re.compile(r"^\s*(\d+[.)]|[-*•])\s+", re.MULTILINE)
ACCOUNT_NAME = re.compile(r"\b(401|403|457)\s?\(?[kb]\)?|\b529\b|\bSection \d+\b", _I)

PERMISSION = [
    re.compile(r"\b(would|do) you (like|want) (me )?to\b", _I),
    re.compile(r"\bwould it (help|be helpful|be useful|be okay|be ok|be all right|be alright)\b", _I),
    re.compile(r"\b(can|could|may|shall|should) (I|we) (walk|explain|show|share|go through|go over|take|talk|break|"
               r"tell|look|unpack|lay out|run through|sketch)\b", _I),
    re.compile(r"\bis it (okay|ok|alright|all right) (if|with you)\b", _I),
    re.compile(r"\b(are you open to|want me to|how would you feel about|would you be open to)\b", _I),
    re.compile(rf"\bif you{_APOS}?(re| are) (open to it|up for it|comfortable|interested|willing)\b", _I),
]

SINGLE_STEP = [
    re.compile(r"\b(one|a|your|the|just one) (small |simple |clear |single |concrete |tiny |easy |first |next |"
               r"practical )+(step|thing|action|task|move)\b", _I),
    re.compile(r"\b(this week|today|tonight|tomorrow|this weekend|before we (talk|meet|speak) again)\b", _I),
    re.compile(r"\bstart (by|with)\b|\bfor now\b|\bnext step\b|\bfirst step\b", _I),
]
# Enumerated options, not the word "options" in passing ("understanding your options").
OPTION_WORDS = re.compile(r"\b(option|choice|path|scenario) (\d+|one|two|three|four|a|b|c|d)\b|\balternatively\b|"
                          r"\banother option\b|\bor you could\b|\byou could also\b", _I)
NEGATION_BEFORE = re.compile(r"\b(not|never|no|nothing|isn['’]t|aren['’]t|wasn['’]t|weren['’]t|doesn['’]t|don['’]t|"
                             r"without)\b(\W+\w+){0,3}\W*$", _I)

JARGON_WORDS = re.compile(
    r"\b(amortiz\w*|basis points|expense ratios?|asset allocation|rebalanc\w*|backdoor roth|tax[- ]loss harvesting|"
    r"sequence[- ]of[- ]returns|cost basis|step[- ]up in basis|marginal (tax )?rate|liquidity|yield curve|"
    r"standard deviation|debt[- ]to[- ]income|pro[- ]rata|annuitiz\w*|fiduciary|escrow|duration risk)\b", _I)
JARGON_ACRONYMS = re.compile(r"\b(RMD|MAGI|AGI|DTI|APR|APY|ETF|FICA|QCD|QLAC|UTMA|UGMA|PMI|HELOC|RSU|ESPP|ARM|bps)s?\b")
JARGON_EXPLAINED = re.compile(
    r"(which|that|this) (means|is)|in other words|\bi\.e\.|—|\(|\bbasically\b|think of it|\bmeaning\b|"
    r"stands for|\bessentially\b|\bin plain (english|terms)\b|\bsimply put\b|, or\b", _I)

ASSUMED_KNOWLEDGE = [
    re.compile(r"\bas you (probably |surely |already |must |obviously )?know\b", _I),
    re.compile(r"\b(obviously|everyone knows|anyone knows)\b", _I),
    re.compile(r"\byou (probably |surely |must )?already know\b", _I),
    re.compile(rf"\b(it{_APOS}s|it is|this is|that{_APOS}s) (really |pretty |very )?(simple|easy|basic|obvious|elementary)\b", _I),
    re.compile(r"\bbasic (math|finance|stuff)\b", _I),
]

EMPTY_REASSURANCE = [
    re.compile(rf"\bdon{_APOS}?t (you )?worry\b", _I),
    re.compile(rf"\b(it|everything|things)({_APOS}ll| will) (all )?(be|work out|turn out) ?(fine|okay|ok|alright|all right)?\b", _I),
    re.compile(rf"\beverything happens for a reason\b|\bstay positive\b|\bmoney isn{_APOS}t everything\b", _I),
    re.compile(rf"\byou{_APOS}ll be (fine|okay|ok)\b|\bit is what it is\b|\bhang in there\b|\bkeep your chin up\b", _I),
]

CONDESCENSION = [
    re.compile(r"(^|[.!?]\s+)(listen|look)[,.!]", _I),
    re.compile(r"\b(calm down|relax,|you need to understand|not rocket science|as I (already )?said|sweetie|honey)\b", _I),
    re.compile(rf"\blet me (be (clear|blunt)|spell it out)\b|\bit{_APOS}s not that (hard|complicated)\b", _I),
]

SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")

# --------------------------------------------------------------------------- exemplars

# Written for the project. The offline judge compares each reply's embedding with these: close to
# the first group and far from the second reads as on-voice.
ON_VOICE_EXEMPLARS = (
    "I can hear how stressful this has been, and it makes complete sense that you feel stuck. You're not alone in "
    "this; it's one of the most common situations I see. Would it help if I walked you through how the numbers "
    "work? For now, one small step: write down the balance and the interest rate of each card this week.",
    "First, thank you for telling me this. Feeling embarrassed about a 401(k) you haven't looked at in years is "
    "completely understandable, and it's very fixable. The $38,000 in it is still yours. Shall I explain what your "
    "options look like? Your first step is simply to log in and note the current balance.",
    "That sounds exhausting, and your worry is a sign of how much you care about your family. Many couples "
    "disagree about this exact question. If you're open to it, I can show you how a $300 monthly contribution "
    "grows over 15 years. One clear next step: pick a 20-minute time this weekend to look at it together.",
    "It's natural to feel overwhelmed when the advice you read contradicts itself. Nothing about this means you "
    "did anything wrong. Would you like me to explain the one idea that makes the rest click? Start by finding "
    "last year's tax return and the line that shows taxable income.",
)
OFF_VOICE_EXEMPLARS = (
    "You should have started saving years ago. Just cut your spending and pay off the cards.",
    "Obviously you need to rebalance your asset allocation and minimize your AGI. It's simple.",
    "Don't worry, everything will work out fine. Stay positive.",
    "Here are your options: 1. refinance 2. consolidate 3. use the avalanche method 4. use the snowball method "
    "5. negotiate with lenders 6. declare bankruptcy. Pick whichever you like.",
    "That was a big mistake. Why did you ignore it for so long? As you know, compound interest works against you.",
)


# --------------------------------------------------------------------------- rubric


@dataclass(frozen=True)
class Criterion:
    id: str
    title: str
    description: str  # the wording the LLM judge reads
    quality_dimension: str  # the dataset's per-turn quality score it relates to
    profile_basis: tuple[str, ...] = ()  # the profile's own lines it comes from


@dataclass(frozen=True)
class AvoidRule:
    text: str  # the profile's wording
    detector: str | None  # None: no automatic detector; left to the LLM judge


@dataclass(frozen=True)
class RubricScores:
    """Detector scores of one reply: per criterion a score in [0, 1] and the phrases that earned it."""

    scores: dict[str, float]
    evidence: dict[str, list[str]]
    avoid_violations: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores)


CRITERIA_BASE = (
    ("feelings_first", "Acknowledges feelings before facts",
     "Names or validates what the client feels before giving information or numbers.", "empathy_score",
     ("feel", "emotion")),
    ("judgment_free", "Judgment-free and normalizing",
     "Makes clear the situation is common and fixable; never criticizes past decisions.", "appropriateness_score",
     ("judg", "normaliz", "common")),
    ("specific_numbers", "Specific numbers",
     "Uses concrete dollar amounts, rates, ages or timelines instead of vague language.", "clarity_score",
     ("number", "dollar", "specific")),
    ("asks_permission", "Asks permission before educating",
     "Asks whether the client wants an explanation before teaching.", "brand_voice_alignment",
     ("permission",)),
    ("single_clear_step", "One clear next step",
     "Ends with one clear, concrete next step rather than a list of options.", "clarity_score",
     ("step", "option", "progress")),
    ("avoids_avoid_list", "Avoids the profile's avoid-list",
     "Avoids everything on the consultant's avoid-list (for example unexplained jargon, assumptions about what "
     "the client knows, judgment, too many options, vague reassurance).", "brand_voice_alignment",
     ("avoid",)),
)
CRITERION_IDS = tuple(c[0] for c in CRITERIA_BASE)

# Keyword (in the avoid item's own wording) -> detector. First match wins.
_AVOID_KEYWORDS = (
    (("jargon", "acronym", "technical term"), "unexplained_jargon"),
    (("assum", "knowledge level", "already knows"), "assumed_knowledge"),
    (("judg", "critici", "blam", "shaming", "past money", "past financial"), "judgment"),
    (("options", "choices", "overwhelm"), "too_many_options"),
    (("platitude", "reassurance", "vague", "generic"), "empty_reassurance"),
    (("condescend", "lectur", "talk down", "patroniz"), "condescension"),
)
DEFAULT_AVOID = ("financial jargon without explanation", "assumptions about knowledge level",
                 "judgment of past financial decisions", "overwhelming with too many options",
                 "generic platitudes without specifics")


def _avoid_detector(text: str) -> str | None:
    low = text.lower()
    for keywords, detector in _AVOID_KEYWORDS:
        if any(k in low for k in keywords):
            return detector
    return None


@dataclass(frozen=True)
class Rubric:
    consultant: str
    tone: str
    principles: tuple[str, ...]
    techniques: tuple[str, ...]
    criteria: tuple[Criterion, ...]
    avoid_rules: tuple[AvoidRule, ...]
    on_voice_exemplars: tuple[str, ...] = ON_VOICE_EXEMPLARS
    off_voice_exemplars: tuple[str, ...] = OFF_VOICE_EXEMPLARS

    @property
    def criterion_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.criteria)

    @property
    def unmatched_avoid(self) -> tuple[str, ...]:
        return tuple(r.text for r in self.avoid_rules if r.detector is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "consultant": self.consultant, "tone": self.tone, "principles": list(self.principles),
            "techniques": list(self.techniques),
            "criteria": [{"id": c.id, "title": c.title, "description": c.description,
                          "quality_dimension": c.quality_dimension, "profile_basis": list(c.profile_basis)}
                         for c in self.criteria],
            "avoid_rules": [{"text": r.text, "detector": r.detector} for r in self.avoid_rules],
        }

    def detect(self, reply: str, *, client_message: str = "") -> RubricScores:
        """Score `reply` on every criterion with the rule-based detectors."""
        return detect(reply, self, client_message=client_message)


def build_rubric(profile: dict[str, Any] | None) -> Rubric:
    """The rubric for a consultant profile (`consultant_profile` of a Bright Run file, as stored on
    the dataset row). With no profile the criteria still apply and the avoid-list is the default
    one (the Bright Run reference profile's)."""
    profile = profile or {}
    style = profile.get("communication_style") or {}
    principles = tuple(str(v) for _, v in sorted((profile.get("core_philosophy") or {}).items()))
    techniques = tuple(str(t) for t in style.get("techniques") or ())
    tone = str(style.get("tone") or "warm, professional, never condescending")
    avoid_texts = [str(a) for a in (style.get("avoid") or DEFAULT_AVOID)]
    # "never condescending" in the tone is an avoid item too.
    avoid_texts += [f"never {m} (tone)" for m in re.findall(r"never ([\w -]+?)(?:,|$)", tone)]
    profile_lines = principles + techniques + tuple(avoid_texts)
    criteria = []
    for cid, title, description, dimension, keywords in CRITERIA_BASE:
        basis = tuple(line for line in profile_lines if any(k in line.lower() for k in keywords))
        if cid == "avoids_avoid_list":
            basis = tuple(avoid_texts)
        criteria.append(Criterion(cid, title, description, dimension, basis))
    rules = tuple(AvoidRule(text, _avoid_detector(text)) for text in avoid_texts)
    return Rubric(consultant=str(profile.get("name") or "the consultant"), tone=tone, principles=principles,
                  techniques=techniques, criteria=tuple(criteria), avoid_rules=rules)


# --------------------------------------------------------------------------- detectors


def _hits(patterns: list[re.Pattern], text: str) -> list[str]:
    return [m.group(0).strip() for p in patterns for m in p.finditer(text)]


def _unnegated_hits(patterns: list[re.Pattern], text: str) -> list[str]:
    """Hits not negated just before ("this is not stupid", "you're not being reckless")."""
    return [m.group(0).strip() for p in patterns for m in p.finditer(text)
            if not NEGATION_BEFORE.search(text[max(0, m.start() - 40):m.start()])]


def clean_text(text: str | None) -> str:
    """Undo the literal "\\n" sequences some exported files carry instead of line breaks."""
    return (text or "").replace("\\r\\n", "\n").replace("\\n", "\n")


def sentences(text: str) -> list[str]:
    return [s for s in (part.strip() for part in SENTENCE_SPLIT.split(text or "")) if s]


def specific_numbers(text: str) -> list[str]:
    """Concrete figures in `text`, without list markers and account names."""
    masked = ACCOUNT_NAME.sub(" ", LIST_MARKER.sub(" ", text or ""))
    return [m.group(0) for m in NUMBER.finditer(masked)]


def list_items(text: str) -> int:
    return len(LIST_MARKER.findall(text or ""))


def _feelings_first(sents: list[str]) -> tuple[float, list[str]]:
    ack_at = next((i for i, s in enumerate(sents) if _hits(EMOTION_ACK, s)), None)
    if ack_at is None:
        return 0.0, []
    fact_at = next((i for i, s in enumerate(sents) if specific_numbers(s)), None)
    evidence = _hits(EMOTION_ACK, sents[ack_at])
    if ack_at <= 1 and (fact_at is None or ack_at <= fact_at):
        return 1.0, evidence
    return 0.5, evidence


def _jargon_key(term: str) -> str:
    return term.lower().rstrip("s")


def _unexplained_jargon(sents: list[str], client_message: str = "") -> list[str]:
    """Jargon never explained in the reply. A term explained once (in a sentence with an
    explanation cue) is explained for the whole reply; a term the client used is not jargon."""
    seen: dict[str, str] = {}
    explained: set[str] = set()
    for s in sents:
        terms = [m.group(0) for m in JARGON_WORDS.finditer(s)] + [m.group(0) for m in JARGON_ACRONYMS.finditer(s)]
        for term in terms:
            seen.setdefault(_jargon_key(term), term)
            if JARGON_EXPLAINED.search(s):
                explained.add(_jargon_key(term))
    client = client_message.lower()
    return [term for key, term in seen.items() if key not in explained and key not in client]


def _option_count(text: str) -> int:
    return len(OPTION_WORDS.findall(text))


def _too_many_options(text: str) -> bool:
    return list_items(text) > 3 or _option_count(text) >= 3


def detect(reply: str, rubric: Rubric | None = None, *, client_message: str = "") -> RubricScores:
    """Score `reply`. `client_message` (optional) keeps terms the client used from counting as jargon."""
    rubric = rubric or build_rubric(None)
    text = clean_text(reply)
    sents = sentences(text)
    scores: dict[str, float] = {}
    evidence: dict[str, list[str]] = {}

    scores["feelings_first"], evidence["feelings_first"] = _feelings_first(sents)

    judgmental = _unnegated_hits(JUDGMENTAL, text)
    normalizing = _hits(NORMALIZING, text)
    scores["judgment_free"] = 0.0 if judgmental else (1.0 if normalizing else 0.5)
    evidence["judgment_free"] = [f"judgmental: {j}" for j in judgmental] or normalizing

    numbers = specific_numbers(text)
    scores["specific_numbers"] = 1.0 if len(numbers) >= 2 else (0.5 if numbers else 0.0)
    evidence["specific_numbers"] = numbers

    permission = _hits(PERMISSION, text)
    scores["asks_permission"] = 1.0 if permission else 0.0
    evidence["asks_permission"] = permission

    steps = _hits(SINGLE_STEP, text)
    step_score = 1.0 if steps else 0.4
    if _too_many_options(text):
        step_score /= 2
    scores["single_clear_step"] = step_score
    evidence["single_clear_step"] = steps

    checks = {
        "unexplained_jargon": lambda: _unexplained_jargon(sents, clean_text(client_message)),
        "assumed_knowledge": lambda: _hits(ASSUMED_KNOWLEDGE, text),
        "judgment": lambda: judgmental,
        "too_many_options": lambda: ([f"{list_items(text)} list items, {_option_count(text)} enumerated options"]
                                     if _too_many_options(text) else []),
        "empty_reassurance": lambda: _hits(EMPTY_REASSURANCE, text) if not numbers else [],
        "condescension": lambda: _hits(CONDESCENSION, text),
    }
    active = [r for r in rubric.avoid_rules if r.detector]
    violations, avoid_evidence = [], []
    for rule in active:
        hits = checks[rule.detector]()
        if hits:
            violations.append(rule.text)
            avoid_evidence.extend(f"{rule.text}: {h}" for h in hits)
    scores["avoids_avoid_list"] = 1.0 - len(violations) / len(active) if active else 1.0
    evidence["avoids_avoid_list"] = avoid_evidence

    # Keep the rubric's order and only its criteria.
    ordered = {cid: scores[cid] for cid in rubric.criterion_ids}
    return RubricScores(scores=ordered, evidence={cid: evidence[cid] for cid in ordered}, avoid_violations=violations)
