"""The plan chooses what Unsloth compiles and the job applies that choice before Unsloth is imported.

Nothing compiled (UNSLOTH_COMPILE_DISABLE=1) cannot be switched on once Unsloth is imported, so the
job cannot decide it from its own token count (it tokenises after the import): the plan's estimate
carries the choice, and job/pipeline.py puts it in the environment first.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest

from tuneform.core.manifest import PlannedEstimate
from tuneform.estimate.catalog import get_flavor, known_model
from tuneform.estimate.estimator import Workload, estimate
from tuneform.job import pipeline


def planned(model_id: str, tokens: int, engine: str = "unsloth", flavor: str = "a100-large") -> PlannedEstimate:
    shape, card = known_model(model_id), get_flavor(flavor)
    assert shape is not None and card is not None
    result = estimate(Workload(shape, tokens, engine=engine), card)  # type: ignore[arg-type]
    return PlannedEstimate.model_validate(result.as_json())


def test_the_plan_compiles_nothing_for_a_short_lfm2_job_and_the_blocks_for_a_long_one() -> None:
    assert planned("LiquidAI/LFM2.5-1.2B-Instruct", 1_000_000).compile == "none"
    # through the fused kernels, nothing compiled beats the rest compiled at any length (estimator.py
    # uncompiled_below_tokens): the next choice is the blocks
    assert planned("LiquidAI/LFM2.5-1.2B-Instruct", 6_000_000).compile == "none"
    assert planned("LiquidAI/LFM2.5-1.2B-Instruct", 8_000_000).compile == "blocks"
    assert planned("meta-llama/Llama-3.2-1B", 1_000_000).compile == "off"
    assert planned("meta-llama/Llama-3.2-1B", 1_000_000, engine="trl").compile is None


def test_compiling_nothing_is_priced_with_its_own_warm_up_and_speed() -> None:
    short = planned("LiquidAI/LFM2.5-1.2B-Instruct", 1_000_000)
    longer = planned("LiquidAI/LFM2.5-1.2B-Instruct", 8_000_000)
    assert short.breakdown["seconds"]["warmup"] < longer.breakdown["seconds"]["warmup"]
    assert short.tokens_per_second < longer.tokens_per_second  # eager steps are slower; the compile's warm-up pays


def test_the_job_asks_for_nothing_compiled_before_unsloth_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNSLOTH_COMPILE_DISABLE", raising=False)
    assert pipeline.planned_compile(planned("LiquidAI/LFM2.5-1.2B-Instruct", 1_000_000)) == "none"
    assert pipeline.planned_compile(planned("meta-llama/Llama-3.2-1B", 1_000_000)) == "off"
    assert pipeline.planned_compile(None) is None
    # an estimate of this machine's CPU (fp32) says nothing about what a GPU should compile
    assert pipeline.planned_compile(planned("LiquidAI/LFM2.5-1.2B-Instruct", 1_000_000, flavor="cpu-basic")) is None


def test_the_choice_is_in_the_environment_before_the_engine_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    def bundle(model_id: str) -> Any:  # the two fields import_engine_first reads
        return SimpleNamespace(
            run=SimpleNamespace(estimate=planned(model_id, 1_000_000)), spec=SimpleNamespace(compute=SimpleNamespace(engine="auto"))
        )

    monkeypatch.setenv("UNSLOTH_COMPILE_DISABLE", "0")  # restored after the test
    pipeline.import_engine_first(bundle("meta-llama/Llama-3.2-1B"))
    assert os.environ["UNSLOTH_COMPILE_DISABLE"] == "0"
    pipeline.import_engine_first(bundle("LiquidAI/LFM2.5-1.2B-Instruct"))
    assert os.environ["UNSLOTH_COMPILE_DISABLE"] == "1"
