"""A user's denoiser weights, loaded safely: ``torch.load(weights_only=True)``, the network's
structure checked, every tensor finite."""
from __future__ import annotations

import os
import warnings

import torch

from ...core.errors import ConfigError
from .denoiser import Denoiser

__all__ = ["load_denoiser_weights"]


def load_denoiser_weights(path: str, in_channels: int, num_classes: int, base: int) -> "Denoiser":
    """A multi-head :class:`Denoiser` with the state dict in ``path`` (a plain state dict, or
    a dict holding one under ``"state_dict"``), read with ``torch.load(weights_only=True)``.

    Raises :class:`ConfigError` naming the file when it is missing, is not a PyTorch file of
    tensors, does not fit the network (a tensor of another shape: width ``base``, the data's
    channels and classes), misses tensors or holds foreign ones (named), or holds NaN or
    infinite values.
    """
    net = Denoiser(in_channels, num_classes, base, multi_head=True)
    if not os.path.isfile(path):
        raise ConfigError(f"denoiser_weights: no file {path!r}")
    try:
        with warnings.catch_warnings():   # torch's notes on a foreign pickle protocol: the error below says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # UnpicklingError, a bad zip, a text file: all mean "not a safe state dict"
        raise ConfigError(f"denoiser_weights {path!r} is not a PyTorch file of tensors that loads safely "
                          f"({type(exc).__name__}); save the weights with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        what = type(state).__name__ if not isinstance(state, dict) else "a dict with values other than tensors"
        raise ConfigError(f"denoiser_weights {path!r} hold {what}, not a state dict; save the weights with "
                          f"torch.save(model.state_dict(), path)")
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misfit = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    where = f"a multi-head Denoiser of width {base} for {in_channels} channels and {num_classes} classes"
    if misfit:
        k = misfit[0]
        raise ConfigError(f"denoiser_weights {path!r} do not fit {where}: {k} has shape {tuple(state[k].shape)}, "
                          f"the network {tuple(expected[k].shape)} ({len(misfit)} tensors differ); set den_width "
                          f"to the width they were trained with, or check the dataset")
    if missing or unexpected:
        def names(keys):
            return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
        parts = ([f"{len(missing)} tensors are missing ({names(missing)})"] if missing else []) + \
                ([f"{len(unexpected)} are not the network's ({names(unexpected)})"] if unexpected else [])
        raise ConfigError(f"denoiser_weights {path!r} are not a complete state dict of {where}: {'; '.join(parts)}; "
                          f"save the whole state dict with torch.save(model.state_dict(), path)")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ConfigError(f"denoiser_weights {path!r} hold NaN or infinite values in {len(bad)} tensors "
                          f"({', '.join(bad[:3])}{', …' if len(bad) > 3 else ''}); a diverged training saved them — "
                          f"use weights from a finite checkpoint")
    net.load_state_dict(state)
    return net
