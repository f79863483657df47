"""The papers' methods on top of the core: diffusion classifier and RDC, class VAEs and
ABS, JEAT, sampling, energy landscapes, sample quality, randomized smoothing, and the
evaluations the chapters run on any model."""
