"""What every chapter does first: resolve and validate its parameters, pick the device,
seed, load the data; then it hands out the profile's models and caches evaluations.

    ch = Chapter.from_parameters("energy", globals())   # the parameters cell's values
    std = ch.model("standard")                           # trained once, then from the cache
    path = ch.run(energy_path, std, ch.eval_split, record, eps=0.1, step_size=0.025)
"""
from __future__ import annotations

import time

import torch

from ..core.cached import cached_call
from ..core.data import Dataset, load_dataset
from ..core.fit import ClassifierRecipe, TrainedModel, obtain
from ..core.runtime import follow_thread_share, pick_device, seed_everything
from ..core.store import ArtifactStore
from .knobs import KNOBS, Config, chapter_parameters, check_counts, resolve
from .claims import claims_of
from .judge import CHECK, Outcome, judge, multiplicity
from .recipes import preflight, recipe
from .report import Report, fmt_budget

__all__ = ["Chapter"]

#: Modules that turn cached measurements into the page's numbers and words (the chapters'
#: analyses, claims tables, the rule, the report): never run through the cache, so that an edit
#: reaches every run, cached or not.
DECIDING = tuple(f"{__package__}.{m}" for m in ("analysis", "claims", "judge", "report"))


class Chapter:
    """Resolved parameters, device, data, store and report of one chapter run. Each model and
    cached evaluation first takes up the process's thread share (see
    :func:`~robgen_lib.core.runtime.follow_thread_share`)."""

    def __init__(self, profile: str = "quick", *, chapter: str | None = None, **params):
        self.started = time.time()
        self.cfg: Config = resolve(profile, chapter=chapter, **params)
        self.device: torch.device = pick_device(self.cfg.device)
        seed_everything(self.cfg.seed)
        if self.device.type == "cuda":  # TF32 matmuls/convolutions: several times faster on recent GPUs
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.store = ArtifactStore()
        self.store.check_writable()
        self._other: dict[str, Dataset] = {}
        self.data: Dataset = self.load_other(self.cfg.dataset)
        check_counts(self.cfg, {"test": len(self.data.test)})
        if self.cfg.chapter in KNOBS["ood_dataset"].chapters and self.cfg.ood_dataset:
            self.load_other(self.cfg.ood_dataset)
        preflight(self.cfg, self.data)
        self.report = Report(profile)
        self.claims = claims_of(self.cfg.chapter) if self.cfg.chapter else {}
        self.outcomes: dict[str, Outcome] = {}   # every claim judged so far, by id
        self.checks: dict[str, Outcome] = {}     # the prerequisites among them
        self._models: dict = {}

    @classmethod
    def from_parameters(cls, chapter: str, namespace) -> "Chapter":
        """The chapter set up from its notebook's namespace (``globals()``): the parameters
        cell's values and whatever papermill injected, each checked against the knobs the
        chapter takes (a misspelt or foreign name stops here, before any work)."""
        params = chapter_parameters(chapter, namespace)
        return cls(params.pop("profile"), chapter=chapter, **params)

    # -- data -----------------------------------------------------------------------
    @property
    def eval_split(self):
        """The test images attacks are run on (the first ``n_eval``, or all)."""
        return self.data.test.head(self.cfg.n_eval)

    # -- models ---------------------------------------------------------------------
    def model(self, name: str, *, data: Dataset | None = None, **options) -> TrainedModel:
        """The model called ``name`` (see :data:`~robgen_lib.book.recipes.RECIPES`) with this
        run's knobs, trained once and cached — e.g. ``ch.model("noise", sigma=0.25)``;
        ``data``: another dataset than the chapter's."""
        return self.obtain(recipe(self.cfg, data or self.data, name, **options), data=data)

    def obtain(self, model_recipe, *, data: Dataset | None = None) -> TrainedModel:
        """The model of a recipe on the chapter's data (or ``data``); each trained network is
        loaded once per chapter and shared by every model assembled from it. A classifier no
        better than ``min_accuracy`` (default 1.5 × chance: one that settled on a single class)
        stops the chapter: no claim is judged against it."""
        follow_thread_share()
        data = data or self.data
        floor = None
        if isinstance(model_recipe, ClassifierRecipe):
            floor = 1.5 / data.num_classes if self.cfg.min_accuracy is None else self.cfg.min_accuracy
        return obtain(model_recipe, data, device=self.device, store=self.store, memo=self._models,
                      min_accuracy=floor)

    def load_other(self, name: str) -> Dataset:
        """A dataset with this run's sizes (e.g. CIFAR-10 for chapter 5's out-of-domain
        study), loaded once; the set-up loads every dataset the knobs name, so a missing one
        stops the first cell."""
        if name not in self._other:
            c = self.cfg
            self._other[name] = load_dataset(name, data_dir=c.data_dir, download=c.download, n_train=c.n_train,
                                             n_heldout=c.n_heldout, n_test=c.n_test)
        return self._other[name]

    # -- evaluations ----------------------------------------------------------------
    def run(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, computed once and then read from the cache; the key is
        derived from the call (see :mod:`robgen_lib.core.cached`): trained models count by
        their spec and are passed to ``fn`` as their networks, data by its fingerprint.

        Only measurements are cached: a function of :data:`DECIDING` (the book's reading of
        measurements and its rule) is refused, so that an edited rule reaches every run."""
        if fn.__module__.startswith(DECIDING):
            raise TypeError(f"{fn.__module__}.{fn.__qualname__} reads measurements for the page, and readings and "
                            f"decisions are never cached: cache the measurements it reads with ch.run and call it on them")
        follow_thread_share()
        return cached_call(self.store, fn, *args, **kwargs)

    # -- verdicts -------------------------------------------------------------------
    def judge(self, claim_id: str, evidence, measured: str, *, only_when: str | None = None, **fields) -> None:
        """Judge the chapter's claim ``claim_id`` (declared in its claims table,
        :mod:`robgen_lib.book.claims`) on ``evidence`` by the book's one rule
        (:mod:`robgen_lib.book.judge`), print the verdict and add it to the closing table.
        ``measured``: the run's numbers in words; ``fields``: values for the claim's sentence
        beyond the run's knobs. Every outcome is kept in ``ch.outcomes`` (a prerequisite's also in
        ``ch.checks``, for the claims that need it); nothing is returned, so that a cell ending
        in a verdict shows only the printed verdict."""
        if claim_id not in self.claims:
            raise KeyError(f"chapter {self.cfg.chapter} declares no claim {claim_id!r} (its claims: "
                           f"{', '.join(self.claims)})")
        if any(v.claim.endswith(f"[{claim_id}]") for v in self.report.verdicts):
            raise ValueError(f"claim {claim_id} is judged twice in one run")
        claim = self.claims[claim_id]
        v, o = judge(claim, evidence, measured, checks=self.checks, fields={**self.fields(), **fields},
                     knobs=self.cfg, only_when=only_when)
        self.outcomes[claim_id] = o
        if claim.role == CHECK:
            self.checks[claim_id] = o
        print(self.report.add(v), end="\n\n")

    def fields(self) -> dict[str, str]:
        """The run's knobs as a claim's sentence shows them (budgets as the paper writes them)."""
        return {k: fmt_budget(v) if isinstance(v, float) else str(v) for k, v in self.cfg.items()}

    def glue_bars(self) -> None:
        """Make each claim's bar available to the prose: ``{glue:text}`bar_<id>``` (its size,
        e.g. "5 points") and ``{glue:text}`rule_<id>``` (every part's test, e.g. "within ±10 points")."""
        from myst_nb import glue   # the book's extras

        for claim in self.claims.values():
            glue(f"bar_{claim.id}", claim.bar(self.cfg), display=False)
            glue(f"rule_{claim.id}", claim.rule(self.cfg), display=False)

    # -- the page ------------------------------------------------------------------
    def describe(self):
        """The run's data, device and knobs, as the chapter's set-up cell shows them (and the
        claims' bars, glued for the prose)."""
        from IPython.display import Markdown   # the book's extras

        self.glue_bars()
        return Markdown(f"{self.data.summary()} | device: {self.device}\n\n{self.cfg.table()}")

    def summary(self):
        """The closing table (every claim: the paper's number, this run's, the verdict), what
        95 % per claim allows, and the run time."""
        from IPython.display import Markdown

        return Markdown(f"{self.report.markdown()}\n\n{multiplicity(self.report.verdicts)}\n\n"
                        f"Chapter executed in {self.elapsed():.0f} s on {self.device}.")

    def elapsed(self) -> float:
        return time.time() - self.started
