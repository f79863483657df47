"""The book layer: knobs and profiles, the chapter context, studies shared by chapters,
the yardstick, verdicts and tables, plots."""
