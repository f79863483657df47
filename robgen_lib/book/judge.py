"""How a verdict is decided: one rule for every claim and every prerequisite of the book.

A chapter declares its claims once, in its claims table (:mod:`robgen_lib.book.claims`); a
notebook cell measures the evidence and hands it to :func:`judge` with the claim's id. The
rule, in order:

1. **Prerequisites.** A claim names the checks it needs (a valid stand-in model, headroom
   above a ceiling, a premise, a working detector, an unmasked attack). A check is itself
   judged by this rule; unless every needed check *passed*, the claim is
   *not informative*, and the verdict says which check failed and why.
2. **Seeds.** A claim that compares trained models needs ``seeds`` training seeds (3 by
   default for such claims). With fewer, it is *not informative*; each seed is judged on its
   own, and seeds that disagree make it *inconclusive (the seeds disagree)*.
3. **Power.** An equivalence claim ("within ±bar") whose interval is at least 2·bar wide, and
   a non-inferiority claim ("no worse than −bar") whose half-width is at least the bar,
   cannot succeed at this n: *not informative (n = … is too small for a ±… bar)*.
4. **The test.** Each part of the claim is a :class:`Test` of one estimate with its 95 %
   interval (:class:`~robgen_lib.core.stats.Estimate`) against a bar:

   ==================  ===============================  ======================  =====================
   kind                claim                            holds when              fails when
   ==================  ===============================  ======================  =====================
   superiority         d > bar (``below``: d < bar)      low > bar               high ≤ bar
   direction           d > 0 (``below``: d < 0)          low > 0                 high ≤ 0
   non-inferiority     d > −bar                          low > −bar              high ≤ −bar
   equivalence         |d| < bar                         −bar < low, high < bar  low ≥ bar or high ≤ −bar
   fact                an exact, measured yes/no          yes                     no
   ==================  ===============================  ======================  =====================

   A tie is never counted for the claim; an interval across the bar is *inconclusive*.
   A claim of several parts holds when every part holds and fails when one part fails.
5. **Near the bar.** A decided outcome whose deciding bound lies within the test's
   ``margin`` of the bar is *inconclusive (near the bar)*: its word could change on another
   machine. The default margin, 2 points for rates, is the largest change of a robust
   accuracy seen between two instruction sets on the same code (chapters 4 and 6 run with
   SSE4.1 against AVX2: 1–2 points).

A paper's claim reads *reproduced* / *not reproduced* (or *reproduced only when …* where the
run measured the conditions under which it holds); the book's own questions read *holds* /
*does not hold*; a prerequisite reads *passed* / *failed*. Every interval is at 95 % per
claim; :func:`multiplicity` says how many chance calls that allows in a chapter.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from ..core.stats import LEVEL, Estimate
from .report import INCONCLUSIVE, NOT_INFORMATIVE, Verdict

__all__ = ["Test", "Claim", "Outcome", "Seeds", "judge", "outcome", "decide_test", "multiplicity", "KINDS", "PAPER",
           "BOOK", "CHECK"]

#: The kinds of comparison (see the module's docstring).
KINDS = ("superiority", "direction", "non-inferiority", "equivalence", "fact")
#: What a claim is: a paper's claim, the book's own question, or a prerequisite of other claims.
PAPER, BOOK, CHECK = "paper", "book", "check"
#: What a verdict prints in place of a paper's number for the book's questions and prerequisites.
OWN_QUESTION, PREREQUISITE = "- (this book's question)", "- (a prerequisite)"
#: The margin of a rate (2 points) and of other scales unless a test gives its own.
RATE_MARGIN = 0.02


@dataclass(frozen=True)
class Test:
    """One part of a claim: ``name`` (the key of its estimate in the evidence; "" for a claim
    of one part), the kind of comparison, the bar, the side (``below``: the claim is that the
    quantity is *under* the bar), the near-the-bar ``margin`` in the estimate's units."""

    __test__ = False   # not a test case, whatever pytest makes of the name
    kind: str
    bar: "float | str" = 0.0   # a number, or the name of the knob that sets it (e.g. "mask_gap")
    name: str = ""
    below: bool = False
    margin: float = RATE_MARGIN

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind of comparison {self.kind!r}: one of {', '.join(KINDS)}")
        if self.kind == "direction" and self.bar not in (0, 0.0):
            raise ValueError("a direction test has bar 0; use superiority for another bar")

    def at(self, knobs: Mapping[str, object]) -> "Test":
        """This test with a knob-named bar replaced by the run's value."""
        if not isinstance(self.bar, str):
            return self
        if self.bar not in knobs:
            raise KeyError(f"a test's bar names the knob {self.bar!r}, which this run does not have")
        return replace(self, bar=float(knobs[self.bar]))

    def size(self, unit: str) -> str:
        """The bar's size in words, in ``unit`` ("points", "%" or "" for a plain number):
        "5 points", "90 %", "0.2"."""
        if unit in ("points", "%"):
            return f"{100 * abs(self.bar):.3g} {unit}"
        return f"{abs(self.bar):g}"

    def describe(self, unit: str) -> str:
        """The test in words, e.g. "above 5 points", "within ±10 points", "below 0.2"."""
        size, sign = self.size(unit), "-" if self.bar < 0 else ""
        side = "below" if self.below else "above"
        return {"superiority": f"{side} {sign}{size}", "direction": f"{side} 0",
                "non-inferiority": f"{'at most +' if self.below else 'at least -'}{size}",
                "equivalence": f"within ±{size}", "fact": "exact"}[self.kind]


@dataclass(frozen=True)
class Claim:
    """One claim of a chapter, declared once in its claims table.

    ``id``: short and stable (the table at a glance and the chapter's links key on it);
    ``sentence``: the claim, with ``{fields}`` the run fills in (a knob's value, e.g. a
    budget; ``{bar}``, the size of its first bar);
    ``paper``: the paper's number and where it comes from (None: the book's own question);
    ``measures``: what the run measures to test it; ``tests``: its parts; ``needs``: the ids
    of the checks it rests on; ``seeds``: the training seeds it needs (claims that compare
    trained models); ``role``: :data:`PAPER`, :data:`BOOK` or :data:`CHECK`."""

    id: str
    sentence: str
    measures: str
    tests: tuple[Test, ...]
    paper: str | None = None
    needs: tuple[str, ...] = ()
    seeds: int = 1
    role: str = PAPER
    points: bool = True   # the bars are differences of rates (printed in points); False: plain numbers
    unit: str | None = None   # or say it: "points", "%" (a rate's level), "" (a plain number)

    def __post_init__(self):
        if self.role not in (PAPER, BOOK, CHECK):
            raise ValueError(f"claim {self.id}: role is one of paper, book, check")
        if (self.role == PAPER) != (self.paper is not None):
            raise ValueError(f"claim {self.id}: a paper's claim states the paper's number, and only it")
        names = [t.name for t in self.tests]
        if not names or len(set(names)) != len(names) or (len(names) > 1 and "" in names):
            raise ValueError(f"claim {self.id}: one unnamed test, or several with distinct names")

    def text(self, fields: Mapping[str, object]) -> str:
        """The sentence with its fields filled in (a field the run did not give stays as ``{name}``)."""
        return self.sentence.format_map(_Keep(fields))

    @property
    def units(self) -> str:
        return self.unit if self.unit is not None else ("points" if self.points else "")

    def bar(self, knobs: Mapping[str, object] | None = None) -> str:
        """The size of the claim's first bar, as the prose quotes it: "5 points", "0.2"."""
        return next((t.at(knobs or {}).size(self.units) for t in self.tests if t.kind != "fact"), "")

    def rule(self, knobs: Mapping[str, object] | None = None) -> str:
        """Every part's test in words: "above 5 points", "gap: above 0; overlap: below 0.2"."""
        return "; ".join((f"{t.name}: " if t.name else "") + t.at(knobs or {}).describe(self.units)
                         for t in self.tests)


class _Keep(dict):
    """Fields for ``str.format_map`` that leave a missing one as it was written."""

    def __missing__(self, key):
        return "{" + key + "}"


@dataclass(frozen=True)
class Outcome:
    """``holds``: True / False / None (inconclusive); ``why``: the reason a word is qualified
    (near the bar, the seeds disagree) or the claim is not informative (then ``informative``
    is False)."""

    holds: bool | None
    why: str = ""
    informative: bool = True


def _side(test: Test, e: Estimate) -> tuple[float, float, float]:
    """The estimate's bounds and the bar turned so that the claim is "value > bar"."""
    if test.below:
        return -e.high, -e.low, -test.bar
    return e.low, e.high, test.bar


def decide_test(test: Test, evidence) -> tuple[bool | None, bool]:
    """(outcome, near the bar) of one test on its evidence (an Estimate, or a bool for a fact)."""
    if test.kind == "fact":
        if not isinstance(evidence, (bool, type(None))):
            raise TypeError(f"a fact is a measured True/False, got {type(evidence).__name__}")
        return evidence, False
    if not isinstance(evidence, Estimate):
        raise TypeError(f"a {test.kind} test needs an Estimate with its interval, got {type(evidence).__name__}")
    m = test.margin
    if test.kind == "equivalence":
        low, high, bar = evidence.low, evidence.high, test.bar
        if -bar < low and high < bar:
            return True, min(bar - high, low + bar) < m
        if low >= bar or high <= -bar:
            return False, max(low - bar, -bar - high) < m
        return None, False
    low, high, bar = _side(test, evidence)
    if test.kind == "non-inferiority":   # the turned quantity may fall short of the claim's side by the bar
        bar = -test.bar
    if low > bar:
        return True, low - bar < m
    if high <= bar:
        return False, bar - high < m
    return None, False


def _power(test: Test, evidence) -> str:
    """Why the test cannot succeed at this n ("" when it can)."""
    if not isinstance(evidence, Estimate) or test.kind not in ("equivalence", "non-inferiority"):
        return ""
    needed = 2 * test.bar if test.kind == "equivalence" else test.bar
    width = evidence.width if test.kind == "equivalence" else evidence.width / 2
    if width >= needed:
        bar = f"{100 * test.bar:.0f}-point" if evidence.percent or evidence.points else f"{test.bar:g}"
        return f"n = {evidence.n} is too small for a ±{bar} bar"
    return ""


def _one(tests: tuple[Test, ...], claim_id: str, evidence) -> Outcome:
    """The outcome of one seed's (or the only) evidence: power first, then every part. A claim
    of one unnamed test whose evidence is a dict ("for every model …") applies the test to
    each of its values."""
    if len(tests) == 1 and tests[0].name == "":
        pairs = ([(tests[0], e) for e in evidence.values()] if isinstance(evidence, Mapping)
                 else [(tests[0], evidence)])
    else:
        missing = [t.name for t in tests if t.name not in evidence]
        if missing:
            raise KeyError(f"claim {claim_id}: no evidence for {missing} (has {sorted(evidence)})")
        pairs = [(t, evidence[t.name]) for t in tests]
    if not pairs:
        raise ValueError(f"claim {claim_id}: no evidence")
    for t, e in pairs:
        why = _power(t, e)
        if why:
            return Outcome(None, why, informative=False)
    decided = [(t, *decide_test(t, e)) for t, e in pairs]
    if any(o is False and not near for _, o, near in decided):
        return Outcome(False)
    if any(o is False for _, o, _ in decided):
        return Outcome(None, "near the bar")
    if any(o is None for _, o, _ in decided):
        return Outcome(None)
    if any(near for _, _, near in decided):
        return Outcome(None, "near the bar")
    return Outcome(True)


@dataclass
class Seeds:
    """Evidence measured once per training seed: ``Seeds({0: e0, 1: e1, 2: e2})``."""

    per_seed: Mapping[int, object] = field(default_factory=dict)

    @staticmethod
    def of(per_seed: Mapping[int, object]):
        """The evidence of a run over ``per_seed``'s training seeds: :class:`Seeds` of them, or
        the one seed's own evidence when the run trained one (the rule then asks for more)."""
        return Seeds(per_seed) if len(per_seed) > 1 else next(iter(per_seed.values()))


def outcome(claim: Claim, evidence, checks: Mapping[str, Outcome] | None = None,
            knobs: Mapping[str, object] | None = None) -> Outcome:
    """The rule of the module's docstring, steps 1–5, for one claim (``knobs``: the run's
    values, for bars that a knob sets)."""
    checks = checks or {}
    tests = tuple(t.at(knobs or {}) for t in claim.tests)
    for need in claim.needs:
        if need not in checks:
            raise KeyError(f"claim {claim.id} needs check {need!r}, which this run has not judged yet")
        c = checks[need]
        if c.holds is not True:
            state = "failed" if c.holds is False else "not shown"
            return Outcome(None, f"prerequisite {need} {state}" + (f": {c.why}" if c.why else ""), informative=False)
    per_seed = evidence.per_seed if isinstance(evidence, Seeds) else None
    if per_seed is None:
        if claim.seeds > 1:
            return Outcome(None, f"one training seed; the rule needs {claim.seeds}", informative=False)
        return _one(tests, claim.id, evidence)
    if len(per_seed) < claim.seeds:
        return Outcome(None, f"{len(per_seed)} training seed(s); the rule needs {claim.seeds}", informative=False)
    outcomes = [_one(tests, claim.id, e) for e in per_seed.values()]
    if not all(o.informative for o in outcomes):
        return next(o for o in outcomes if not o.informative)
    words = {(o.holds, o.why) for o in outcomes}
    if len(words) == 1:
        return outcomes[0]
    return Outcome(None, "the seeds disagree")


def word(claim: Claim, o: Outcome, only_when: str | None = None) -> str:
    """The verdict word of an outcome for this kind of claim."""
    if not o.informative:
        return f"{NOT_INFORMATIVE} ({o.why})"
    if o.holds is None:
        return f"{INCONCLUSIVE} ({o.why})" if o.why else INCONCLUSIVE
    if claim.role == CHECK:
        return "passed" if o.holds else "failed"
    if claim.role == BOOK:
        return "holds" if o.holds else "does not hold"
    if o.holds:
        return "reproduced"
    return f"reproduced only when {only_when}" if only_when else "not reproduced"


def judge(claim: Claim, evidence, measured: str, *, checks: Mapping[str, Outcome] | None = None,
          fields: Mapping[str, object] | None = None, knobs: Mapping[str, object] | None = None,
          only_when: str | None = None) -> tuple[Verdict, Outcome]:
    """The verdict of ``claim`` on ``evidence`` (an Estimate; a dict of them by test name; a
    bool for a fact; or :class:`Seeds` of those), printed with ``measured`` (the run's
    numbers, in words). ``checks``: the outcomes of the prerequisites judged so far;
    ``fields``: the values of the sentence's fields; ``knobs``: the run's knob values (for
    knob-named bars); ``only_when``: the measured conditions under which a failed paper claim
    does hold."""
    o = outcome(claim, evidence, checks, knobs)
    paper = claim.paper if claim.role == PAPER else PREREQUISITE if claim.role == CHECK else OWN_QUESTION
    text = claim.text({"bar": claim.bar(knobs), **(fields or {})})
    v = Verdict(f"{text} [{claim.id}]", paper, measured, word(claim, o, only_when))
    return v, o


def multiplicity(verdicts) -> str:
    """What 95 % per claim allows in a chapter: of its decided paper claims, how many a
    chance error would be expected to turn (each test errs with probability at most 5 %)."""
    decided = [v for v in verdicts if v.paper.startswith("- ") is False
               and not v.status.startswith((INCONCLUSIVE, NOT_INFORMATIVE))]
    total = [v for v in verdicts if not v.paper.startswith("- ")]
    expected = (1 - LEVEL) * len(decided)
    return (f"This chapter judges {len(total)} claims of the papers, {len(decided)} of them decisively, each at "
            f"{100 * LEVEL:.0f} % on its own (no joint correction): about {expected:.1f} of the decided words "
            f"could be wrong by chance alone.")
