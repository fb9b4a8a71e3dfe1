"""Can this machine run a config: a CUDA GPU where the config needs one, vLLM where it generates
with vLLM, and the model's weights on disk or on a hub it can reach.

Asked before any directory is made (tina.start_check for a single run, the local launchers' checks) and again
by a job at its start, before anything heavy loads: a SLURM job runs on a node the submitting
machine cannot see into. Each answer is one line naming the key and what to do instead; finding it
costs seconds (importing torch, one bounded request to the hub), never a download's retries.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

from tina.errors import ConfigError

VLLM_INSTALL = "pip install -c constraints.txt -e '.[vllm]'"  # the README's command
HUB_TIMEOUT_S = 5.0


def cuda_needs(tc) -> list[str]:
    """The settings of `tc` that need a CUDA GPU, as `key=value`."""
    needs = [f"compute.{key}=true" for key in ("bf16", "use_vllm") if getattr(tc.compute, key)]
    if tc.model.attn_implementation.value == "flash_attention_2":
        needs.append("model.attn_implementation=flash_attention_2")
    return needs


def problem(tc) -> str | None:
    """Why this machine cannot run `tc` (one line), or None."""
    needs = cuda_needs(tc)
    if tc.compute.use_vllm and needs == ["compute.use_vllm=true"] and importlib.util.find_spec("vllm") is None:
        return f"compute.use_vllm=true: vLLM is not installed here; install it with {VLLM_INSTALL}, or set compute.use_vllm=false"
    if needs:
        import torch

        if not torch.cuda.is_available():
            return (f"{needs[0]}: needs a CUDA GPU and this machine has none (torch {torch.__version__}); "
                    "run it on a GPU node (e.g. -m hydra/launcher=slurm), or use compute=cpu for a CPU run")
    if tc.compute.use_vllm and importlib.util.find_spec("vllm") is None:
        return f"compute.use_vllm=true: vLLM is not installed here; install it with {VLLM_INSTALL}, or set compute.use_vllm=false"
    why = hub_problem(tc.model.name_or_path)
    if why:
        return (f"model.name_or_path: {tc.model.name_or_path} is not a local directory and {why}; "
                "pass a local copy (model.name_or_path=/path/to/model)")
    return None


def check(tc) -> None:
    why = problem(tc)
    if why:
        raise ConfigError(why)


def hub_problem(repo_id: str) -> str | None:
    """Why the model `repo_id` (a local path or a hub id) cannot be loaded from here, or None.

    A local directory or a copy in the hub cache loads without a network; otherwise the hub must
    answer within HUB_TIMEOUT_S (transformers would retry for a minute before failing)."""
    if Path(repo_id).expanduser().is_dir():
        return None
    from huggingface_hub import constants

    if _cached(repo_id, Path(constants.HF_HUB_CACHE)):
        return None
    if constants.HF_HUB_OFFLINE:
        return f"is not in the hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set"
    return _hub_answer(repo_id)


def _cached(repo_id: str, cache: Path) -> bool:
    snapshots = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return any(snapshots.glob("*/config.json"))


@functools.lru_cache(maxsize=None)
def _hub_answer(repo_id: str) -> str | None:
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return None if os.environ.get("HF_TOKEN") else "is gated on the hub; set HF_TOKEN"
    except RepositoryNotFoundError:
        return f"no such model on the hub ({constants.ENDPOINT})"
    except HfHubHTTPError as e:
        return f"the hub ({constants.ENDPOINT}) answered {str(e).splitlines()[0][:120]}"
    except Exception as e:  # no route, no DNS, a timeout: the download would fail the same way
        return f"the hub ({constants.ENDPOINT}) is unreachable from here ({type(e).__name__}: {str(e)[:100]})"
    return None
