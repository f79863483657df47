"""The book renders and each chapter page holds its figures.

The pages are rendered from the committed outputs (execution off): nbval already executes
every chapter in `make test`, and `make book` executes them for the published book, so the
test neither runs a chapter twice nor depends on `make book` or a warm cache.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import time

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAPTERS = sorted(f for f in os.listdir(os.path.join(ROOT, "chapters")) if f.endswith(".ipynb"))
#: The pages of the editions at other profiles (rendered from their committed outputs).
EDITION_PAGES = sorted(os.path.relpath(p, ROOT)[:-6] for p in glob.glob(os.path.join(ROOT, "editions", "*", "*.ipynb")))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from robgen_lib.book.render import stage

    out = tmp_path_factory.mktemp("book")
    where = stage(os.path.join(ROOT, "chapters"), str(out / "stage"))   # the committed outputs, execution off
    exe = shutil.which("jupyter-book", path=os.path.dirname(sys.executable)) or shutil.which("jupyter-book")
    proc = subprocess.run([exe, "build", where, "--path-output", str(out), "-W", "--keep-going"],
                          capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out / "_build" / "html"


def test_rendering_needs_every_executed_chapter(tmp_path):
    from robgen_lib.book.render import stage

    (tmp_path / "executed").mkdir()
    with pytest.raises(SystemExit, match="lacks the executed 01_energy.ipynb.*robgen_lib.book.execute --out"):
        stage(str(tmp_path / "executed"), str(tmp_path / "stage"))
    assert not (tmp_path / "stage").exists()     # nothing staged before the check


def test_every_chapter_and_every_edition_page_is_in_the_toc():
    toc = open(os.path.join(ROOT, "_toc.yml")).read()
    for page in [f"chapters/{nb[:-6]}" for nb in CHAPTERS] + EDITION_PAGES:
        assert f"file: {page}\n" in toc, page


@pytest.mark.parametrize("nb", CHAPTERS)
def test_chapter_page_holds_its_figures(built, nb):
    page = (built / "chapters" / (nb[:-6] + ".html")).read_text()
    figures = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
    expected = sum(1 for c in nbformat.read(os.path.join(ROOT, "chapters", nb), 4).cells
                   if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert expected > 0 and len(figures) >= expected
    for src in figures:
        assert (built / "chapters" / src).resolve().exists(), src
    assert "Verdict:" in page and "vs this run" in page.lower()     # the closing table
    assert "bibliography.html#" in page  # citations link into the bibliography


def test_committed_notebooks_follow_the_conventions():
    for nb in CHAPTERS:
        cells = nbformat.read(os.path.join(ROOT, "chapters", nb), 4).cells
        code = [c for c in cells if c.cell_type == "code"]
        tags = [c.metadata.get("tags", []) for c in code]
        assert sum("parameters" in t for t in tags) == 1, nb
        assert not any("injected-parameters" in t for t in tags), nb
        assert any("nbval-check-output" in t for t in tags), nb
        # executed top to bottom in one kernel (a compute cell may rightly print nothing)
        assert [c.get("execution_count") for c in code] == list(range(1, len(code) + 1)), \
            f"{nb} was not executed in order from a fresh kernel"
        assert any(c.get("outputs") for c in code), f"{nb} has no outputs"
        assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", [])), nb


def test_every_figure_of_a_chapter_has_a_caption_saying_what_to_look_at():
    for nb in CHAPTERS:
        for c in nbformat.read(os.path.join(ROOT, "chapters", nb), 4).cells:
            draws = "plots." in c.source or "_figure(" in c.source
            if c.cell_type != "code" or not (draws or any("image/png" in o.get("data", {}) for o in c.outputs)):
                continue
            figure = c.metadata.get("mystnb", {}).get("figure", {})
            assert len(figure.get("caption", "")) > 40 and not figure.get("caption_before"), f"{nb} {c.id}: no caption"
            # the caption wraps every display of the cell: the figure must be its only one
            shown = [o for o in c.get("outputs", []) if o.output_type in ("display_data", "execute_result")]
            assert len(shown) <= 1 and all("image/png" in o.data for o in shown), f"{nb} {c.id}: more than the figure"


def test_the_executor_runs_chapter_one_first_and_six_last_and_refuses_an_unknown_chapter():
    from robgen_lib.book.execute import chapters

    order = chapters()
    assert sorted(order) == [nb[:-6] for nb in CHAPTERS]
    assert order[0] == "01_energy" and order[-1] == "06_yardstick"        # the others wait on their models
    assert chapters(["04", "chapters/02_he_pgd.ipynb", "04_rdc"]) == ["04_rdc", "02_he_pgd"]
    with pytest.raises(SystemExit, match="no chapter '07'.*01_energy"):
        chapters(["07"])


# -- what a reader sees: the built pages in a real headless browser ---------------------------
PAGES = ["intro", "guide", *[f"chapters/{nb[:-6]}" for nb in CHAPTERS], *EDITION_PAGES, "bibliography"]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make setup installs it)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


#: Console messages of the theme's own scripts, not of the book's pages, harmless to a reader:
#: under Sphinx 7.4 sphinx-thebe's one configuration script lands twice in every page (the
#: second copy re-declares a constant; the launch button it configures is off here), and
#: pydata-sphinx-theme reports an empty stored theme mode on file:// pages before using "auto".
THEME_NOISE = (re.compile(r"^Identifier 'THEBE_JS_URL' has already been declared$"),
               re.compile(r"^Got invalid theme mode: \. Resetting to auto\.$"))

#: Run in the page once MathJax has finished: what a reader would notice is missing.
PAGE_FACTS = """() => ({
  text: document.querySelector('main') ? document.querySelector('main').innerText : document.body.innerText,
  typeset: document.querySelectorAll('mjx-container').length,
  images: [...document.querySelectorAll('main img')].map(i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight,
    !!(i.closest('figure') && i.closest('figure').querySelector('figcaption')), i.getBoundingClientRect().width]),
  links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
  tables: [...document.querySelectorAll('main table')].map(t => t.innerText.slice(0, 200).toLowerCase()),
})"""


@pytest.mark.parametrize("page", PAGES)
def test_a_reader_sees_typeset_math_loaded_figures_and_working_links(built, browser, page):
    path = built / f"{page}.html"
    tab = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda err: errors.append(str(err)))
    tab.goto(path.as_uri(), wait_until="load")
    tab.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise.then(() => true) : true")
    facts = tab.evaluate(PAGE_FACTS)
    shots = os.path.join(ROOT, "_build", "screenshots")
    os.makedirs(shots, exist_ok=True)
    tab.screenshot(path=os.path.join(shots, page.replace("/", "_") + ".png"), full_page=True)
    tab.close()

    errors = [e for e in errors if not any(noise.match(e) for noise in THEME_NOISE)]
    assert not errors, f"{page}: console errors {errors[:3]}"
    assert "\\(" not in facts["text"] and "\\[" not in facts["text"], f"{page}: math left untypeset"
    source = (ROOT + "/" + page + (".md" if page in ("intro", "guide", "bibliography") else ".ipynb"))
    if "$" in open(source, encoding="utf-8").read():
        assert facts["typeset"] > 0, f"{page}: the page has math but MathJax typeset none of it"
    for src, w, h, captioned, shown in facts["images"]:
        assert w > 0 and h > 0, f"{page}: figure {src} did not load"
        if page not in ("intro", "guide", "bibliography"):
            assert captioned, f"{page}: figure {src} has no caption under it"
            # drawn for the page's width: a browser that shrinks it shrinks its text below 9 pt
            assert shown >= w - 1, f"{page}: figure {src} is shown {shown:.0f} px wide of its {w} px"
    for href in facts["links"]:
        if re.match(r"^(https?:|mailto:|#|javascript:)", href):
            continue
        target = (path.parent / href.split("#")[0]).resolve()
        assert target.exists(), f"{page}: link {href} leads nowhere"
    if page not in ("intro", "guide", "bibliography"):
        assert facts["images"], f"{page}: no figure"
        assert any("verdict" in t and "claim" in t for t in facts["tables"]), f"{page}: no verdict table"


def test_an_edition_page_appears_only_for_a_chapter_that_ran_to_its_end_and_says_where_it_came_from(
        tmp_path, monkeypatch):
    import nbformat.v4 as v4
    from robgen_lib.book import execute as ex

    def fake_run(name, scratch, params, threads, share):   # 01 runs to its end, 02 fails half-way
        nb = v4.new_notebook(cells=[v4.new_markdown_cell("# The energy inside a classifier\n\ntext")])
        nbformat.write(nb, os.path.join(scratch, name + ".ipynb"))
        return name, 90.0, "" if name == "01_energy" else "PapermillExecutionError: cell 7"

    monkeypatch.setattr(ex, "_run_one", fake_run)
    with pytest.raises(SystemExit, match="--edition needs --out"):
        ex.execute(["01"], edition="MNIST edition")
    out = tmp_path / "editions" / "mnist"
    results = ex.execute(["01", "02"], jobs=1, out_dir=str(out), params=[("profile", "mnist")],
                         edition="MNIST edition", command="make edition-mnist")
    assert results["02_he_pgd"][1] and sorted(os.listdir(out)) == ["01_energy.ipynb"]   # no half page
    cells = nbformat.read(out / "01_energy.ipynb", 4).cells
    assert cells[0].source.startswith("# The energy inside a classifier (MNIST edition)\n")
    note = cells[1].source
    for fact in ("`profile = mnist`", "`make edition-mnist`", "commit `", "cores", "1.5 minutes"):
        assert fact in note, (fact, note)


def test_the_chapters_left_running_take_up_the_cores_that_fell_idle(monkeypatch):
    import threading

    import torch
    from robgen_lib.book import execute as ex
    from robgen_lib.core import runtime

    first_done, seen = threading.Event(), {}

    def fake_run(name, scratch, params, threads, share):   # chapter 01 ends first; 02 then reads its share
        if name == "01_energy":
            seen["01"] = open(share).read()
        else:
            first_done.wait(10)
            for _ in range(100):                             # the executor writes it just after 01 ends
                if open(share).read() != "2":
                    break
                time.sleep(0.05)
            seen["02"] = open(share).read()
        return name, 1.0, ""

    def ends(fn):
        def run(*args):
            out = fn(*args)
            if args[0] == "01_energy":
                first_done.set()
            return out
        return run

    monkeypatch.setattr(ex, "_run_one", ends(fake_run))
    ex.execute(["01", "02"], jobs=2, cores=4)
    assert seen == {"01": "2", "02": "4"}

    before = torch.get_num_threads()
    try:
        for share, expected in (("1", 1), ("not a number", 1), ("2", 2)):
            path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"share-{os.getpid()}")
            with open(path, "w") as f:
                f.write(share)
            monkeypatch.setenv(runtime.THREAD_SHARE, path)
            runtime.follow_thread_share()
            assert torch.get_num_threads() == expected, share
            os.remove(path)
    finally:
        torch.set_num_threads(before)


def test_the_results_at_a_glance_are_the_committed_notebooks_verdicts():
    from robgen_lib.book import glance
    from robgen_lib.book.report import Verdict

    assert open(os.path.join(ROOT, "glance.md"), encoding="utf-8").read() == glance.render(), \
        "glance.md is out of date: run `make glance`"
    assert "{include} glance.md" in open(os.path.join(ROOT, "intro.md"), encoding="utf-8").read()
    rows = [line for line in glance.render().splitlines() if line.startswith("| 0")]
    claims = [v for nb in CHAPTERS for v in glance.verdicts_of(os.path.join(ROOT, "chapters", nb))
              if glance.is_paper_claim(v)]
    assert len(rows) == len(claims) > 20
    for row, v in zip(rows, claims):
        assert v.sentence in row and v.in_table in row
    printed = Verdict("a claim [x-y]", "1 %", "2 % [1, 3], n = 9; more", "not reproduced")
    assert Verdict.parse_all(f"noise\n{printed}\n\n{printed}\n") == [printed, printed]


def test_an_editions_verdicts_are_matched_by_claim_not_by_position():
    """An edition run before a claim was added shows that claim as missing, and every later
    claim still beside its own verdict (budgets in the wording may differ between profiles)."""
    from robgen_lib.book.glance import _matched, claim_key
    from robgen_lib.book.report import Verdict

    def v(claim, word="reproduced"):
        return Verdict(claim, "paper", "m", word)

    quick = [v("A holds (ε = 0.5)"), v("B is new"), v("C holds in ℓ2 (ε = 0.5)"), v("C holds in ℓ∞ (ε = 0.15)")]
    mnist = [v("A holds (ε = 1.5)", "w1"), v("C holds in ℓ2 (ε = 1.5)", "w2"), v("C holds in ℓ∞ (ε = 0.3)", "w3")]
    assert [m.status if m else None for m in _matched(quick, mnist)] == ["w1", None, "w2", "w3"]
    assert claim_key("after 20 PGD steps (ε = 51/255)") == claim_key("after 40 PGD steps (ε = 0.3)")
