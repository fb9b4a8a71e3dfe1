"""Cost accounting (analysis.cost) against the paper's own numbers; no mocks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from analysis import cost
from analysis.cost import (
    flops, flops_breakdown, non_embedding_params, paper_costs, paper_results, run_cost, tokens_from_metrics,
    tokens_from_summary,
)
from tina.costmodel import dollars, gpu_hours, gpu_key, load_prices

ROOT = Path(__file__).resolve().parents[1]

# DeepSeek-R1-Distill-Qwen-1.5B (Qwen2: 28 layers, hidden 1536, MLP 8960, 12 heads, 2 KV heads,
# vocabulary 151936, untied embedding and head)
R1_DISTILL_1_5B = dict(model_type="qwen2", hidden_size=1536, num_hidden_layers=28,
                       intermediate_size=8960, num_attention_heads=12, num_key_value_heads=2,
                       vocab_size=151936)


def test_price_table():
    prices = load_prices()
    assert prices["L40S"] == 1.00  # the paper's figure
    assert prices["cpu"] == 0.0
    for k in ("A100-40GB", "A100-80GB", "H100", "H200", "L4", "A10G", "T4"):
        assert prices[k] > 0
    assert prices["H200"] > prices["H100"] > prices["A100-80GB"] > prices["A100-40GB"] > prices["T4"]


def test_gpu_hours_and_dollars_limr():
    """LIMR: 2x L40S, train 4 USD in the paper -> 4 GPU-hours, i.e. 2 h of wall clock."""
    limr = paper_costs().set_index("item").loc["LIMR"]
    h = gpu_hours(2 * 3600, 2)
    assert h == 4.0
    assert dollars(h, "L40S") == pytest.approx(limr["train_usd"]) == pytest.approx(4.0)
    assert dollars(gpu_hours(2 * 3600, 2), "NVIDIA L40S") == 4.0  # torch's device name


def test_paper_cost_table_consistent():
    """Implied wall-clock hours on 2 L40S, and the table's own totals."""
    t = paper_costs().set_index("item")
    assert (t["train_usd"] + t["eval_usd"] == t["total_usd"]).all()
    everything = t.loc["all tasks"]
    assert everything["total_usd"] == 526
    # all tasks on 2 L40S at 1 USD/GPU-hour: 526 GPU-hours = 263 h of wall clock
    assert dollars(gpu_hours(263 * 3600, 2), "L40S") == pytest.approx(526)
    main = [r for r in t.index if r in ("STILL-3", "DeepScaleR", "Open-RS1", "Open-RS2", "Open-RS3")]
    assert t.loc[main, "train_usd"].sum() == 213 == t.loc["main tasks", "train_usd"]


def test_dollars_other_gpus_and_overrides():
    assert dollars(10, "H100") == pytest.approx(10 * load_prices()["H100"])
    assert dollars(10, "h100") == dollars(10, "NVIDIA H100 80GB HBM3")
    assert dollars(1, "cpu") == 0.0
    assert dollars(3, "L40S", prices={"L40S": 2.0}) == 6.0
    assert dollars(0, "T4") == 0.0


@pytest.mark.parametrize("name,key", [
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H200", "H200"),
    ("NVIDIA A100-SXM4-80GB", "A100-80GB"), ("NVIDIA A100-PCIE-40GB", "A100-40GB"),
    ("NVIDIA L40S", "L40S"), ("NVIDIA L40", "L40"), ("NVIDIA L4", "L4"),
    ("NVIDIA A10G", "A10G"), ("NVIDIA A10", "A10"), ("Tesla T4", "T4"),
    ("Tesla V100-SXM2-16GB", "V100"), ("NVIDIA GeForce RTX 4090", "RTX4090"), ("l40s", "L40S"),
])
def test_gpu_key(name, key):
    assert gpu_key(name) == key


def test_unknown_gpu_lists_known_types():
    with pytest.raises(ValueError) as e:
        dollars(1.0, "TPU v5e")
    msg = str(e.value)
    assert "TPU v5e" in msg and "L40S" in msg and "H100" in msg and "prices.yaml" in msg
    with pytest.raises(ValueError, match="known types"):
        dollars(1.0, "H100", prices={"L40S": 1.0})
    with pytest.raises(ValueError):
        dollars(1.0, None)


def test_gpu_hours_validation():
    assert gpu_hours(0, 8) == 0.0
    assert gpu_hours(1800, 1) == 0.5
    with pytest.raises(ValueError):
        gpu_hours(-1, 1)
    with pytest.raises(ValueError):
        gpu_hours(10, -1)


def test_run_cost_from_summary():
    s = {"wall_seconds": 7200.0, "device": {"type": "cuda", "gpu_name": "NVIDIA L40S",
                                            "num_gpus": 2, "gpu_type": "L40S"}}
    assert run_cost(s) == {"gpu_type": "L40S", "num_gpus": 2, "gpu_hours": 4.0, "usd": 4.0}
    s["device"] = {"type": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "num_gpus": 1,
                   "gpu_type": None}
    assert run_cost(s)["gpu_type"] == "H100"
    cpu = run_cost({"wall_seconds": 99.0, "device": {"type": "cpu", "num_gpus": 0}})
    assert cpu["usd"] == 0.0 and cpu["gpu_hours"] == 0.0


def test_non_embedding_params_r1_distill():
    n = non_embedding_params(R1_DISTILL_1_5B)
    assert n == 1_310_340_608
    total = n + 2 * R1_DISTILL_1_5B["vocab_size"] * R1_DISTILL_1_5B["hidden_size"]
    assert total == pytest.approx(1.777e9, rel=1e-3)  # the model card's 1.78B
    assert non_embedding_params(12345) == 12345


def test_non_embedding_params_counts_a_real_module():
    torch = pytest.importorskip("torch")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=128, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    assert non_embedding_params(model) == non_embedding_params(cfg.to_dict())


def test_flops_formula():
    N, T = 1_310_340_608, 1e9
    b = flops_breakdown(N, T, beta=0.04)
    assert b["generation"] == b["policy_forward"] == b["policy_backward"] == 2 * N * T
    assert b["reference_forward"] == 2 * N * T
    assert b["recompute"] == 0 and b["lora_weight_grads"] == 0
    assert flops(N, T, beta=0.04) == pytest.approx(8 * N * T)
    assert flops(N, T, beta=0.0) == pytest.approx(6 * N * T)
    assert flops(N, T, beta=0.04, gradient_checkpointing=True) == pytest.approx(10 * N * T)
    assert flops(N, T, num_iterations=2) == pytest.approx((2 + 2 * 4) * N * T)
    # prompt/completion split gives the same as the total
    assert flops(N, prompt_tokens=3e8, completion_tokens=7e8, beta=0.04) == flops(N, T, beta=0.04)
    assert flops(N, T, lora_params=18_464_768) == pytest.approx(6 * N * T + 2 * 18_464_768 * T)
    with pytest.raises(ValueError):
        flops(N)


def test_tokens_sources():
    df = pd.DataFrame({"step": [1, 2, 3], "num_tokens": [1000.0, 2100.0, float("nan")]})
    assert tokens_from_metrics(df) == 2100.0
    assert tokens_from_metrics(pd.DataFrame({"step": [1]})) is None
    assert tokens_from_summary({"tokens": {"prompt": 400, "completion": 1600}}) == 2000.0
    assert tokens_from_summary({}) is None


# sha256 of the tables as copied from the reference (shared/reference/) when they were added
PAPER_TABLES = {"paper_costs.csv": "eb7b2d697b8d86a5d351fd0ec6a1b94e1e66cd2ec17b3cc0fffed6c9106c9ffe",
                "paper_results.csv": "435e2c28afed08494cadae8de74e8435eb46fe7806de1b73359af01980a82927"}


def test_paper_tables_are_the_projects_own_copies():
    res = paper_results()
    assert len(res) == 21 and {"name", "kind", "avg", "aime24"} <= set(res.columns)
    rs2 = res.set_index("name").loc["Tina-Open-RS2"]
    assert rs2["avg"] == pytest.approx(50.60) and rs2["pct_epoch"] == 51
    costs = paper_costs()
    assert len(costs) == 17
    # values typed from the paper's cost table: Open-RS2 15 + 17 USD, LIMR 4 + 4, all tasks 526
    by_item = costs.set_index("item")
    assert tuple(by_item.loc["Open-RS2", ["train_usd", "eval_usd", "total_usd"]]) == (15, 17, 32)
    assert tuple(by_item.loc["LIMR", ["train_usd", "eval_usd", "total_usd"]]) == (4, 4, 8)
    assert by_item.loc["all tasks", "total_usd"] == 526
    assert (costs["train_usd"] + costs["eval_usd"] == costs["total_usd"]).all()
    # loaded from inside the package, and byte for byte the copies made of the reference tables
    assert Path(cost.PAPER_DIR).resolve() == (ROOT / "analysis" / "paper").resolve()
    for name, digest in PAPER_TABLES.items():
        assert hashlib.sha256((cost.PAPER_DIR / name).read_bytes()).hexdigest() == digest, name
