"""One way to cache an evaluation: its key is derived from the call itself.

    cached_call(store, energy_path, model, split, record, eps=8 / 255, step_size=2 / 255)

runs ``energy_path`` once and afterwards reads its result from the artifact store. The key
is the function's code id — its qualified name and the version it declares with
:func:`~robgen_lib.core.versions.versioned` (a function without one is refused) — and every
argument bound to its signature, defaults included (so changing a default changes the key):

* plain values — numbers, strings, ``None``, lists, tuples and dicts of them — as they are;
* a trained model (:class:`~robgen_lib.core.fit.TrainedModel`) by its full spec (its data, its
  recipe's code, and for an assembled model every part's; see
  :func:`~robgen_lib.core.fit.model_spec`); the function is called with its network;
* data — a split or a dataset — by its fingerprint (the SHA-256 of its bytes);
* a recipe, loss, objective or scorer by its ``spec()`` and its code id;
* a module-level function (e.g. a loss such as ``ce_loss``) by its code id;
* a tensor by the SHA-256 of its bytes.

Anything else — a network without a spec, a lambda, a random generator — is refused with a
message naming the argument, because nothing says what it is. ``progress`` (a progress bar)
is left out of the key.

A result that is a dict of tensors and plain data is stored as it is; any other result (a
tensor, a number, a tuple) is stored under ``"value"`` and handed back unwrapped.

**Random models.** A network among the arguments that draws fresh noise on every call (it has
a ``restart_draws(seed)`` method: the fresh-noise diffusion classifier, the soft-smoothed
classifier, anything wrapping them) has its draws restarted from a seed derived from the key
before the function runs. A cached result then depends on its call alone — not on which calls
came before it in the process, nor on which process of a parallel build computed it — and the
key says so (``"draws": "from the key"``), so results of the older, history-dependent draws are
never read for it.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from typing import Any, Callable

import torch
from torch import nn

from .fit import TrainedModel, spec_of
from .store import ArtifactStore
from .versions import code_id

__all__ = ["cached_call", "call_key"]

#: Arguments that do not change what a function returns.
NOT_IN_KEY = frozenset({"progress"})


def _key_of(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, TrainedModel):
        return {"model": value.spec}
    if isinstance(value, (list, tuple)):
        return [_key_of(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _key_of(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        return {"tensor": list(data.shape), "dtype": str(data.dtype),
                "sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest()}
    if callable(getattr(value, "fingerprint", None)):
        return {"data": value.fingerprint()}
    if callable(getattr(value, "spec", None)):
        return {"spec": spec_of(value)}
    if inspect.isfunction(value) and "<" not in value.__qualname__:
        return {"code": code_id(value)}
    what = "a network" if isinstance(value, nn.Module) else f"a {type(value).__name__}"
    raise TypeError(f"cannot derive a cache key from {where}: it is {what} without a spec; pass a trained "
                    f"model, data, plain values, or an object with spec()")


def _call_value(value: Any) -> Any:
    """What the function receives: trained models become their networks."""
    if isinstance(value, TrainedModel):
        return value.model
    if isinstance(value, list):
        return [_call_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_call_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _call_value(v) for k, v in value.items()}
    return value


def _random_parts(values) -> list[nn.Module]:
    """The modules among ``values`` (and inside them) whose fresh draws can be restarted."""
    found, stack = [], list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, nn.Module):
            found.extend(m for m in v.modules()
                         if getattr(m, "stochastic", False) and callable(getattr(m, "restart_draws", None)))
    return found


def draws_seed(spec: dict) -> int:
    """The seed a call's random models restart from: 63 bits of the SHA-256 of its key."""
    return int(hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:15], 16)


def call_key(fn: Callable, *args, **kwargs) -> dict:
    """The cache spec of ``fn(*args, **kwargs)`` (see the module docstring)."""
    if not inspect.isfunction(fn) or "<" in fn.__qualname__:
        raise TypeError(f"cached_call needs a module-level function, got {fn!r}")
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = {name: _key_of(value, f"argument {name!r} of {fn.__name__}")
                 for name, value in bound.arguments.items() if name not in NOT_IN_KEY}
    spec = {"code": code_id(fn), "arguments": arguments}
    if _random_parts(_call_value(list(bound.arguments.values()))):
        spec["draws"] = "from the key"
    return spec


def cached_call(store: ArtifactStore, fn: Callable, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)``, computed once and then read from ``store``."""
    spec = call_key(fn, *args, **kwargs)

    def build() -> dict:
        args_, kwargs_ = _call_value(args), _call_value(kwargs)
        seed = draws_seed(spec)
        for module in _random_parts([args_, kwargs_]):
            module.restart_draws(seed)
        result = fn(*args_, **kwargs_)
        return result if isinstance(result, dict) else {"value": result}

    payload = store.get_or_build(fn.__name__, spec, build)
    return payload["value"] if set(payload) == {"value"} else payload
