"""robgen_lib — the small library behind the robgen book.

Chapters call it; they never re-implement it.  Conventions: images are float tensors
in [0, 1] (NCHW); every classifier returns logits; budgets are in pixel units.
"""
__version__ = "0.1.0"
