"""The embedded "toy distilled base": a tiny Qwen2 model committed with the package.

`TINY_DIR` holds what `python -m tina.embedded.build` writes (config, generation config,
safetensors weights, tokenizer with chat template). It loads with `AutoModelForCausalLM` and
`AutoTokenizer` like any hub model, so the default run exercises the real code path offline.
"""

from pathlib import Path

TINY_DIR = Path(__file__).parent / "tiny"
# experiment=toy_transition's model: the same build, on the "sum" task (tina/embedded/build.py: SETTINGS).
TRANSITION_DIR = Path(__file__).parent / "transition"
# The toy analog of a non-distilled base (`python -m tina.embedded.build --setting direct`): conf/model/tiny_direct.yaml.
TINY_DIRECT_DIR = Path(__file__).parent / "tiny_direct"
