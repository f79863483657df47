"""The book layer: knobs and profiles, the book's models by name (recipes), the chapter
context, studies shared by chapters, each chapter's analysis, the yardstick, verdicts and
tables, plots."""
