"""Every chapter's claims table against its notebook: each declared claim is judged exactly
once by the executed chapter, every judged claim is declared, and no cell builds a verdict
by hand."""
import os
import re

import nbformat
import pytest

from robgen_lib.book.claims import claims_of, optional_of
from robgen_lib.book.glance import verdicts_of
from robgen_lib.book.judge import CHECK, PAPER
from robgen_lib.book.knobs import CHAPTERS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = {name: os.path.join(ROOT, "chapters", f)
             for f in sorted(os.listdir(os.path.join(ROOT, "chapters"))) if f.endswith(".ipynb")
             for name in CHAPTERS if f[3:-6] == name}


def test_every_chapter_has_a_notebook_and_a_claims_table():
    assert sorted(NOTEBOOKS) == sorted(CHAPTERS)
    for name in CHAPTERS:
        assert claims_of(name), f"chapter {name} declares no claims"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_declared_claim_is_judged_exactly_once_and_every_judged_claim_is_declared(chapter):
    declared = claims_of(chapter)
    printed = [v.id for v in verdicts_of(NOTEBOOKS[chapter])]
    assert None not in printed, f"{chapter}: a verdict printed without its claim id"
    twice = sorted({i for i in printed if printed.count(i) > 1})
    assert not twice, f"{chapter}: judged more than once: {twice}"
    undeclared = sorted(set(printed) - set(declared))
    assert not undeclared, f"{chapter}: judged but not declared in its claims table: {undeclared}"
    missing = sorted(set(declared) - set(printed) - set(optional_of(chapter)))
    assert not missing, f"{chapter}: declared but never judged: {missing}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_cell_builds_a_verdict_by_hand(chapter):
    nb = nbformat.read(NOTEBOOKS[chapter], as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for pattern in (r"unsettled\s*=", r"\bverdict\(", r"\bhypothesis\(", r"report\.add\(", r"\bdecide\("):
        assert not re.search(pattern, code), f"{chapter}: a cell builds a verdict by hand ({pattern})"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_claims_are_declared_in_full(chapter):
    for c in claims_of(chapter).values():
        assert re.fullmatch(r"[a-z0-9]+(?:[-_][a-z0-9]+)*", c.id), c.id
        assert c.id.split("-")[0] == chapter, f"{c.id}: a claim's id starts with its chapter's name"
        assert c.measures.strip(), f"{c.id}: says what is measured"
        if c.role == PAPER:
            assert c.paper.strip()
        if c.role == CHECK:
            assert not c.needs, f"{c.id}: a prerequisite rests on no other"


def test_printed_claims_have_every_field_filled():
    for chapter, path in NOTEBOOKS.items():
        for v in verdicts_of(path):
            assert "{" not in v.sentence, f"{chapter}: unfilled field in {v.claim!r}"
