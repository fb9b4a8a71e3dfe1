"""Will the trainer's resume load a checkpoint's pickles? torch's safe loading decides, so ask it first.

A checkpoint can pass every size check and still be refused: written by another torch or
transformers, or holding a Python object that `torch.load(weights_only=True)` does not allow. Such a
checkpoint is damage like any other: tina.run_dir sets it aside and resumes from the one before.
"""

from __future__ import annotations

from pathlib import Path


def refused_pickle(ckpt: Path) -> str | None:
    """Why the trainer's resume would refuse one of the checkpoint's pickles, or None.

    HF Trainer loads them with torch's safe loading (weights_only: no Python object outside an
    allowlist), the RNG state with numpy's types allowed too. torch lists what a pickle names without
    loading its tensors, so this costs little; only resuming needs it (the adapter is safetensors).
    """
    from contextlib import nullcontext

    import torch
    from transformers.trainer_pt_utils import safe_globals

    for path in sorted(ckpt.glob("*.pt*")):
        if path.suffix not in (".pt", ".pth"):
            continue
        try:
            with safe_globals() if path.name.startswith("rng_state") else nullcontext():
                unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as e:  # not a torch.save zip: torch.load would fail on it too
            return f"{path}: unreadable by torch.load ({type(e).__name__}: {e})"
        if unsafe:
            return f"{path}: torch's safe loading (weights_only) refuses it: it names {', '.join(sorted(unsafe))}"
    return None
