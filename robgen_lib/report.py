"""Verdicts and the closing "paper vs this run" table.

A verdict states a claim, the paper's number, the number measured in this run, and one
of ``reproduced`` / ``not reproduced`` / ``reproduced only when …`` — decided by a
test on the measured values that the chapter shows next to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Verdict:
    claim: str
    paper: str
    measured: str
    status: str

    def __str__(self) -> str:
        return (f"Claim:    {self.claim}\nPaper:    {self.paper}\nThis run: {self.measured}\n"
                f"Verdict:  {self.status}")


def verdict(claim: str, paper: str, measured: str, holds: bool, *, only_when: str | None = None) -> Verdict:
    """``holds`` → reproduced; else ``only_when`` (the conditions under which it does) or not reproduced."""
    if holds:
        status = "reproduced"
    elif only_when:
        status = f"reproduced only when {only_when}"
    else:
        status = "not reproduced"
    return Verdict(claim, paper, measured, status)


def hypothesis(claim: str, measured: str, holds: bool) -> Verdict:
    """A question of this book's own (no paper number): ``holds`` / ``does not hold``."""
    return Verdict(claim, "- (this book's question)", measured, "holds" if holds else "does not hold")


@dataclass
class Report:
    """The verdicts of one chapter run, in order."""

    profile: str
    verdicts: list = field(default_factory=list)

    def add(self, v: Verdict) -> Verdict:
        self.verdicts.append(v)
        return v

    def markdown(self) -> str:
        return markdown_table(["claim", "paper", f"this run (profile `{self.profile}`)", "verdict"],
                              [(v.claim, v.paper, v.measured, f"**{v.status}**") for v in self.verdicts])


def markdown_table(headers, rows) -> str:
    """A Markdown table from a header list and rows of already formatted cells."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_budget(eps: float) -> str:
    """A budget as the paper would write it: 8/255 when it is a multiple of 1/255, else 3 digits."""
    k = eps * 255
    return f"{round(k)}/255" if eps > 0 and abs(k - round(k)) < 1e-6 else f"{eps:.3g}"
