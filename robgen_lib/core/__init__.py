"""The core layer: errors, runtime (device, seeding, roots), value checks, data, models,
energies, attacks, the artifact store, the sharded map and the training loop.

Nothing here knows of papers' methods, chapters, profiles or the book.
"""
