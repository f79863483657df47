"""The core layer: errors, runtime (device, seeding, roots), value checks, data, models,
energies, attacks, the artifact store and evaluations cached from their call, the sharded
map, and the one training loop with the recipes it trains.

Nothing here knows of papers' methods, chapters, profiles or the book.
"""
