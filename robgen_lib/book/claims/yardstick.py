"""Chapter 6's questions (none of the four works compares its models with the others'):
every model of the book under the same independent attacks. These are questions about the
book's own trained models, so each is judged on this run's models (one training each)."""
from ..judge import BOOK, Claim, Test

CLAIMS = (
    Claim("yardstick-no-artefact", "no model's robustness is an artefact of the book's own attack",
          "per model and threat, the paired drop book's PGD − worst case (the independent attacks added); each must "
          "lie below the masking tolerance mask_gap",
          (Test("superiority", "mask_gap", below=True),), role=BOOK),
    Claim("yardstick-vs-cnn", "every generative classifier is more robust than the standard CNN of chapter 1 "
          "(worst case, both norms)",
          "per generative model and threat, the paired gap model − standard CNN of worst-case robust accuracy",
          (Test("direction"),), role=BOOK),
    Claim("yardstick-most-robust", "a generative classifier is the most robust model of the book at these budgets",
          "per threat, the paired gap of worst-case robust accuracy: the best generative model − the best other "
          "model",
          (Test("direction"),), role=BOOK),
    Claim("yardstick-top-agree", "the independent attacks and the book's PGD agree on the three most robust models "
          "(ℓ∞)",
          "the two top-three sets (are they the same?) and, for each ranking, the paired gap between its third and "
          "fourth model (is the top three settled?)",
          (Test("fact", name="same three"), Test("direction", name="settled")), role=BOOK),
)
