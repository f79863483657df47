"""Results at a glance: every paper claim of the book, its verdict in each edition, one table.

    python -m robgen_lib.book.glance            # rewrite glance.md from the committed notebooks
    python -m robgen_lib.book.glance --check    # exit 1 if glance.md is not what they say

The table is read from the verdicts the executed notebooks printed (``Verdict.__str__``,
parsed back by :meth:`Verdict.parse_all`), never typed: one row per claim that carries a
paper's number (the book's own questions stay in their chapters), in chapter order; one
column per edition — the quick profile (``chapters/``), the MNIST edition
(``editions/mnist/``) and the paper profile, which no committed run has reached yet. A row
is one claim: an edition's verdict is matched to it by the claim's id (declared once in the
chapter's claims table, :mod:`robgen_lib.book.claims`), never by its position, so an
edition run before a claim was added shows *not in this edition's run* rather than another
claim's word. An edition printed before claims had ids is matched by the claim's sentence
with its numbers masked (:func:`claim_key`) and its cells say they were judged by the
earlier rules. Each cell links to the claim on its page.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.parse

import nbformat

from .judge import OWN_QUESTION, PREREQUISITE
from .report import Verdict, markdown_table

__all__ = ["EDITIONS", "verdicts_of", "claim_key", "glance_table", "main"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLANCE = os.path.join(ROOT, "glance.md")

#: The editions, as (column title, folder of its executed notebooks or None when never run, why).
EDITIONS = (("quick (8×8 digits)", "chapters", ""),
            ("MNIST edition (28×28)", "editions/mnist", "not run yet: `make edition-mnist`"),
            ("paper profile", None, "not run: needs a GPU"))


def is_paper_claim(v: Verdict) -> bool:
    """A verdict on a paper's claim (not the book's own question, not a prerequisite)."""
    return v.paper not in (OWN_QUESTION, PREREQUISITE)


def verdicts_of(path: str) -> list[Verdict]:
    """The verdicts an executed notebook printed, in order (none if it was never executed)."""
    if not os.path.exists(path):
        return []
    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                found += Verdict.parse_all("".join(out.get("text", "")))
    return found


def claim_key(claim: str) -> str:
    """What identifies a claim across editions: its sentence with every number masked (the
    budgets and counts a profile changes), e.g. "ABS is more robust … in ℓ2 (ε = #)"."""
    return re.sub(r"(?<![ℓA-Za-z])\d+(?:[.,/]\d+)*", "#", claim)


def _same(a: Verdict, b: Verdict) -> bool:
    """The same claim: the same id where both have one, else the same masked sentence."""
    if a.id and b.id:
        return a.id == b.id
    return claim_key(a.sentence) == claim_key(b.sentence)


def _matched(claims: list[Verdict], found: list[Verdict]) -> list[Verdict | None]:
    """For each of ``claims``, the first verdict of ``found`` of the same claim (:func:`_same`)
    not taken by an earlier claim (None when the edition printed no such claim)."""
    free = list(found)
    out = []
    for v in claims:
        hit = next((f for f in free if _same(f, v)), None)
        if hit is not None:
            free.remove(hit)
        out.append(hit)
    return out


def _key_number(measured: str) -> str:
    """The first clause of a verdict's measured line (its leading number and interval)."""
    first = measured.split("; ")[0]
    return first.split(", McNemar")[0]


def _text_fragment(claim: str, length: int = 60) -> str:
    """A URL text fragment (``#:~:text=…``) that scrolls a browser to the claim on its page:
    its first words (cut at a word, as fragments match whole words), percent-encoded with
    the fragment's own syntax characters (``-``, ``,``, ``&``) too."""
    words = claim if len(claim) <= length else claim[:length].rsplit(" ", 1)[0]
    return urllib.parse.quote(words, safe="").replace("-", "%2D")


def _cell(v: Verdict | None, page: str, why: str) -> str:
    if v is None:
        return f"*{why or 'not printed'}*"
    href = f"{page}.html#:~:text={_text_fragment(v.sentence)}"
    if v.id:
        return f'<a href="{href}">{v.in_table}</a>: {_key_number(v.measured)}'
    word = v.status.split(" (unsettled")[0]   # an earlier page: its word, without the old hand-set mark
    return f'<a href="{href}">**{word}**</a> *(earlier rules)*: {_key_number(v.measured)}'


def glance_table(root: str = ROOT) -> str:
    """The Markdown of the at-a-glance table (see the module docstring)."""
    chapters = sorted(f[:-6] for f in os.listdir(os.path.join(root, "chapters")) if f.endswith(".ipynb"))
    rows = []
    for name in chapters:
        per_edition = [verdicts_of(os.path.join(root, folder, name + ".ipynb")) if folder else []
                       for _, folder, _ in EDITIONS]
        claims = [v for v in per_edition[0] if is_paper_claim(v)]
        columns = [_matched(claims, found) for found in per_edition]
        for i, v in enumerate(claims):
            cells = []
            for (_, folder, why), column, found in zip(EDITIONS, columns, per_edition):
                page = f"{folder}/{name}" if folder else ""
                cells.append(_cell(column[i], page, why if not found else "not in this edition's run"))
            rows.append((f"{name[:2]} · {v.sentence}", v.paper, *cells))
    return markdown_table(["claim (chapter · claim)", "paper", *(title for title, _, _ in EDITIONS)], rows)


def render(root: str = ROOT) -> str:
    return ("<!-- generated by `python -m robgen_lib.book.glance` from the executed notebooks; do not edit -->\n\n"
            + glance_table(root) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m robgen_lib.book.glance", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if glance.md differs from the notebooks")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = open(GLANCE, encoding="utf-8").read() if os.path.exists(GLANCE) else ""
        if current != text:
            sys.exit("glance.md is out of date: run `python -m robgen_lib.book.glance`")
        return
    with open(GLANCE, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(GLANCE)}")


if __name__ == "__main__":
    main()
