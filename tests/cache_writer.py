"""A chapter's stand-in for tests/test_cache_cli.py (run as a script): writes entries into a
cache for SECONDS seconds, half of them of current code and half of an older version, reading
each back after it was built, and reports any error.

    python cache_writer.py ROOT SECONDS RESULT_JSON
"""
import json
import sys
import time
import traceback


def main(root: str, seconds: float, result: str) -> None:
    import torch

    from robgen_lib.core.attacks import ce_loss
    from robgen_lib.core.store import ArtifactStore
    from robgen_lib.core.versions import code_id

    store = ArtifactStore(root)
    errors, written, end, i = [], [], time.time() + seconds, 0
    while time.time() < end:
        code = code_id(ce_loss) if i % 2 == 0 else "robgen_lib.core.attacks.ce_loss@0"
        spec = {"code": code, "i": i % 40}
        try:
            payload = store.get_or_build("probe", spec, lambda: {"t": torch.full((256,), float(i % 40))})
            assert float(payload["t"][0]) == float(i % 40)
            if i % 2 == 0:
                written.append(spec)
        except Exception:
            errors.append(traceback.format_exc())
        i += 1
    with open(result, "w") as f:
        json.dump({"errors": errors, "current": written, "ops": i}, f)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
