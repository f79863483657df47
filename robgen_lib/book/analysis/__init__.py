"""What each chapter computes from its cached results: the numbers its verdicts test and the
tables it shows. One module per chapter; each function takes results (dicts from the
evaluations of :mod:`robgen_lib.methods`) and plain settings, never a chapter or a profile."""
