"""The job's eval step on the real demo model: generation, held-out loss, tables and gates."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402

from tuneform.evals.score import score_predictions  # noqa: E402
from tuneform.evals.suite import GateError, Suite, load_suite  # noqa: E402
from tuneform.job.evaluate import (  # noqa: E402
    ModelScores,
    SuiteScores,
    compare,
    generate_predictions,
    heldout_loss,
    load_for_eval,
    score_model,
)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "demo-tiny"
SYSTEM = "Classify the customer message. Reply with one intent label."


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """One intra-op thread: these models are tiny, and on a busy 2-core runner two spinning OpenMP
    threads made the same generations 20-50x slower. Restored for other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo() -> tuple[Any, Any]:
    """The demo model and tokenizer, loaded once (fp32 on CPU)."""
    return load_for_eval(DEMO, device="cpu")


@pytest.fixture(scope="module")
def tiny(demo: tuple[Any, Any]) -> Any:
    """A 2-layer Llama with large random weights: unlike the demo model, whose untrained outputs
    are mostly empty or repetitive, every support prompt gets its own generation, so a padding or
    masking mistake in batching changes predictions (attending to pads changed 25 of 96)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(demo[1]),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.3,
        bos_token_id=1,
        eos_token_id=4,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def support() -> Suite:
    return load_suite(ROOT / "evals" / "support-intents.yaml", ROOT)


def make_suite(
    root: Path, rows: list[dict[str, Any]], *, name: str = "probe", generation: str = "{max_new_tokens: 8}", metrics: str = "[exact_match]"
) -> Suite:
    """Write a suite YAML + JSONL under `root` and load it the way the job does."""
    (root / "evals").mkdir(parents=True, exist_ok=True)
    (root / "evals" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "evals" / f"{name}.yaml").write_text(f"name: {name}\ndata: evals/{name}.jsonl\ngeneration: {generation}\nmetrics: {metrics}\n")
    return load_suite(root / "evals" / f"{name}.yaml", root)


def generate_raw(model: Any, ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation of one unpadded prompt, written out by hand (argmax each step, no cache)."""
    tokens = list(ids)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_id = int(model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax())
            tokens.append(next_id)
            if next_id == 4:  # <|im_end|>
                break
    return tokens[len(ids) :]


# ---------------------------------------------------------------------------------------------
# Generation


def test_batched_generation_equals_one_by_one(demo: tuple[Any, Any], tiny: Any, support: Suite) -> None:
    model, tokenizer = demo
    for scored in (model, tiny):
        batched = generate_predictions(scored, tokenizer, support, batch_size=16)
        single = generate_predictions(scored, tokenizer, support, batch_size=1)
        assert batched == single
        assert list(batched) != [row.id for row in support.rows] and set(batched) == {row.id for row in support.rows}
    assert len(set(batched.values())) == len(support.rows)  # the tiny model answers each row differently
    assert tokenizer.padding_side == "left" and model.training is False


def test_generation_is_greedy_decoding_of_the_chat_prompt(demo: tuple[Any, Any], tiny: Any, support: Suite) -> None:
    _, tokenizer = demo
    rows = Suite(support.spec, support.name, support.path, support.data_path, support.rows[:5])
    expected = {}
    for row in rows.rows:
        text = tokenizer.apply_chat_template(row.messages, add_generation_prompt=True, tokenize=False)
        assert text.startswith("<|startoftext|><|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        expected[row.id] = tokenizer.decode(generate_raw(tiny, ids, 8), skip_special_tokens=True).strip()
    assert len({len(tokenizer.apply_chat_template(r.messages, add_generation_prompt=True)["input_ids"]) for r in rows.rows}) > 1  # padded
    assert generate_predictions(tiny, tokenizer, rows, batch_size=5) == expected


def test_stop_strings_cut_the_prediction(demo: tuple[Any, Any], tiny: Any, tmp_path: Path) -> None:
    _, tokenizer = demo
    rows = [
        {
            "id": "a",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "Excuse me, ship order #90509 to my new address."},
            ],
            "expected": "x",
        }
    ]
    plain = generate_predictions(tiny, tokenizer, make_suite(tmp_path, rows, name="plain", generation="{max_new_tokens: 12}"))["a"]
    assert len(plain) >= 12, f"the tiny model should say something here, said {plain!r}"
    stop = plain[6:8]
    stopped = make_suite(tmp_path, rows, name="stopped", generation=f"{{max_new_tokens: 12, stop: [never-generated, {json.dumps(stop)}]}}")
    assert generate_predictions(tiny, tokenizer, stopped)["a"] == plain[: plain.index(stop)].strip()


def test_prompt_rows_are_one_user_message_when_there_is_a_chat_template(demo: tuple[Any, Any], tiny: Any, tmp_path: Path) -> None:
    _, tokenizer = demo
    model = tiny
    question = "Excuse me, I returned the smart watch, where is my refund?"
    rows = [
        {"id": "prompt", "prompt": question, "expected": "refund"},
        {"id": "chat", "messages": [{"role": "user", "content": question}], "expected": "refund"},
        {"id": "system", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], "expected": "refund"},
    ]
    predictions = generate_predictions(model, tokenizer, make_suite(tmp_path, rows))
    assert predictions["prompt"] == predictions["chat"] != predictions["system"]


def test_without_a_chat_template_prompts_are_raw_text_and_chats_are_refused(demo: tuple[Any, Any], tiny: Any, tmp_path: Path) -> None:
    _, tokenizer = demo
    model = tiny
    raw = copy.deepcopy(tokenizer)
    raw.chat_template = None
    prompt = "refund for my smart watch"
    suite = make_suite(tmp_path, [{"id": "p", "prompt": prompt, "expected": "x"}], name="raw")
    expected = raw.decode(generate_raw(model, raw(prompt)["input_ids"], 8), skip_special_tokens=True).strip()
    assert generate_predictions(model, raw, suite) == {"p": expected}
    # A template given by the run applies even though the tokenizer has none.
    templated = generate_predictions(model, raw, suite, chat_template=tokenizer.chat_template)
    assert templated == generate_predictions(model, tokenizer, suite) != {"p": expected}

    chats = make_suite(tmp_path, [{"id": "c", "messages": [{"role": "user", "content": prompt}], "expected": "x"}], name="chats")
    with pytest.raises(ValueError, match="no chat template"):
        generate_predictions(model, raw, chats)


def test_scoring_restores_training_mode(demo: tuple[Any, Any], tmp_path: Path) -> None:
    model, tokenizer = demo
    suite = make_suite(tmp_path, [{"id": "p", "prompt": "hi", "expected": "x"}])
    model.train()
    try:
        generate_predictions(model, tokenizer, suite)
        assert model.training
    finally:
        model.eval()


# ---------------------------------------------------------------------------------------------
# Held-out loss


def test_heldout_loss_is_the_mean_nll_over_trained_tokens(demo: tuple[Any, Any]) -> None:
    model, _ = demo
    long = ([1, 3, 300, 301, 302, 4, 3, 303, 310, 311, 4], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    short = ([1, 3, 320, 4, 3, 303, 330, 4], [0, 0, 0, 0, 0, 0, 1, 1])
    with torch.no_grad():
        nll = []
        for ids, mask in (long, short):
            logits = model(input_ids=torch.tensor([ids])).logits[0]
            positions = [i for i in range(1, len(ids)) if mask[i]]
            nll.append(F.cross_entropy(logits[[p - 1 for p in positions]], torch.tensor([ids[p] for p in positions]), reduction="none"))
        by_hand = torch.cat(nll).mean().item()
    # Pooled per token (5 tokens), not the mean of the two examples' means.
    assert heldout_loss(model, [long, short], batch_size=2) == pytest.approx(by_hand, rel=1e-5)
    assert heldout_loss(model, [long, short], batch_size=1) == pytest.approx(by_hand, rel=1e-5)
    assert by_hand != pytest.approx(torch.stack([n.mean() for n in nll]).mean().item(), rel=1e-4)


def test_heldout_batches_shrink_to_the_logits_budget(demo: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneform.job import evaluate as runner

    rows = [([1] * n, [1] * n) for n in (40, 30, 20, 10, 5)]
    # 4,000 logit values at a vocabulary of 100: 40 tokens wide; one row of 40 or 30, two of 20 and 10
    monkeypatch.setattr(runner, "LOGITS_BUDGET", 4_000)
    assert [len(b) for b in runner._loss_batches(rows, 8, vocab=100)] == [1, 1, 2, 1]  # 40; 30; 20+10; 5
    monkeypatch.setattr(runner, "LOGITS_BUDGET", 1)
    assert [len(b) for b in runner._loss_batches(rows, 8, vocab=100)] == [1, 1, 1, 1, 1]  # never less than a row
    # the same loss whatever the batches: a tiny budget scores one row at a time
    model, _ = demo
    long = ([1, 3, 300, 301, 302, 4, 3, 303, 310, 311, 4], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    short = ([1, 3, 320, 4, 3, 303, 330, 4], [0, 0, 0, 0, 0, 0, 1, 1])
    one_by_one = heldout_loss(model, [long, short], batch_size=8)
    monkeypatch.setattr(runner, "LOGITS_BUDGET", 2**28)
    assert heldout_loss(model, [long, short], batch_size=8) == pytest.approx(one_by_one, rel=1e-5)


def test_heldout_loss_refuses_inputs_it_cannot_score(demo: tuple[Any, Any]) -> None:
    model, _ = demo
    with pytest.raises(ValueError, match="2 input ids but 3 mask values"):
        heldout_loss(model, [([1, 2], [0, 1, 1])])
    with pytest.raises(ValueError, match="no trained tokens"):
        heldout_loss(model, [([1, 2, 3], [0, 0, 0])])


def test_score_model_reports_suite_metrics_and_loss(demo: tuple[Any, Any], support: Suite) -> None:
    model, tokenizer = demo
    heldout = [([1, 3, 300, 4, 3, 303, 310, 4], [0, 0, 0, 0, 0, 0, 1, 1])]
    scores = score_model(model, tokenizer, [support], heldout)
    metrics = scores.metrics()
    assert list(metrics) == ["exact_match", "eval_loss", "perplexity"]
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert metrics["eval_loss"] == pytest.approx(heldout_loss(model, heldout))
    assert len(scores.suites["support-intents"].report.rows) == len(support.rows)
    assert score_model(model, tokenizer, [support], None).metrics().keys() == {"exact_match"}


def test_load_for_eval_applies_a_peft_adapter_to_its_base(demo: tuple[Any, Any], tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    trained = get_peft_model(
        AutoModelForCausalLM.from_pretrained(DEMO), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    trained.save_pretrained(tmp_path / "adapter")
    model, tokenizer = load_for_eval(tmp_path / "adapter", base=DEMO, device="cpu")
    ids = torch.tensor([[1, 3, 300, 301, 4]])
    with torch.no_grad():
        expected = trained.eval()(input_ids=ids).logits
        assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-5)
        assert not torch.allclose(demo[0](input_ids=ids).logits, expected, atol=1e-3)
    assert tokenizer.chat_template == demo[1].chat_template and next(model.parameters()).dtype == torch.float32
    suite = make_suite(tmp_path, [{"id": "p", "prompt": "where is my refund?", "expected": "refund"}])
    assert generate_predictions(model, tokenizer, suite) == generate_predictions(trained, tokenizer, suite)


def test_four_bit_scoring_needs_a_gpu() -> None:
    with pytest.raises(ValueError, match="four_bit scoring needs a CUDA GPU"):
        load_for_eval(DEMO, device="cpu", four_bit=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bitsandbytes 4-bit kernels need a CUDA GPU")
def test_a_qlora_run_is_scored_on_four_bit_weights(demo: tuple[Any, Any]) -> None:
    """On the GPU (the device run of docs/calibration.md): the linear layers load as NF4, and the
    held-out loss stays near the fp32 model's (4-bit rounding moves it, it does not break it)."""
    import bitsandbytes as bnb

    model, tokenizer = load_for_eval(DEMO, four_bit=True)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    heldout = [([1, 3, 300, 301, 302, 303, 4], [0, 0, 0, 1, 1, 1, 1])]
    quantized, full = heldout_loss(model, heldout), heldout_loss(demo[0], heldout)
    assert math.isfinite(quantized) and quantized == pytest.approx(full, rel=0.1)


# ---------------------------------------------------------------------------------------------
# Tables and gates (predictions given, no model needed)


def scores_for(suites: list[Suite], predictions: dict[str, dict[str, str]], loss: float | None = None) -> ModelScores:
    reports = {s.name: SuiteScores(s, score_predictions(s, predictions.get(s.name, {}))) for s in suites}
    return ModelScores(reports, loss, None if loss is None else math.exp(loss))


@pytest.fixture
def intents(tmp_path: Path) -> Suite:
    rows = [{"id": f"r{i}", "prompt": f"q{i}", "expected": "billing"} for i in range(4)]
    return make_suite(tmp_path, rows, name="intents", metrics="[exact_match, contains]")


@pytest.fixture
def extract(tmp_path: Path) -> Suite:
    rows = [{"id": f"e{i}", "prompt": f"q{i}", "expected": "42"} for i in range(2)]
    return make_suite(tmp_path, rows, name="extract", metrics="[exact_match, json_valid]")


def answers(n_right: int, n: int = 4, right: str = "billing", wrong: str = "refund") -> dict[str, str]:
    return {f"r{i}": right if i < n_right else wrong for i in range(n)}


def test_compare_deltas_with_a_previous_version(intents: Suite) -> None:
    base = scores_for([intents], {"intents": answers(1)}, loss=2.0)
    previous = scores_for([intents], {"intents": answers(2)}, loss=1.5)
    new = scores_for([intents], {"intents": answers(3)}, loss=1.0)
    table = compare(base, previous, new, {"exact_match": ">= 0.7", "eval_loss": "<= 0.9"})
    rows = {row.metric: row for row in table.rows}
    assert list(rows) == ["exact_match", "contains", "eval_loss", "perplexity"]
    em = rows["exact_match"]
    assert (em.base, em.previous, em.new) == (0.25, 0.5, 0.75)
    assert (em.delta_base, em.delta_previous) == (0.5, 0.25) and em.better == "higher"
    assert rows["eval_loss"].delta_base == -1.0 and rows["eval_loss"].delta_previous == -0.5 and rows["eval_loss"].better == "lower"
    assert [(g.metric, str(g.gate), g.value, g.passed) for g in table.gates] == [
        ("exact_match", ">= 0.7", 0.75, True),
        ("eval_loss", "<= 0.9", 1.0, False),
    ]
    assert not table.passed
    data = table.as_json()
    assert data["rows"][0] == {
        "metric": "exact_match",
        "better": "higher",
        "base": 0.25,
        "previous": 0.5,
        "new": 0.75,
        "delta_base": 0.5,
        "delta_previous": 0.25,
    }
    assert data["gates"][1] == {"metric": "eval_loss", "op": "<=", "threshold": 0.9, "condition": "<= 0.9", "value": 1.0, "passed": False}
    assert data["passed"] is False
    assert data["misses"] == [
        {
            "suite": "intents",
            "id": "r3",
            "expected": "billing",
            "prediction": "refund",
            "base_prediction": "refund",
            "scores": {"exact_match": 0.0, "contains": 0.0},
        }
    ]
    json.dumps(data, allow_nan=False)


def test_compare_without_previous_version_or_held_out_data(intents: Suite) -> None:
    table = compare(scores_for([intents], {"intents": answers(0)}), None, scores_for([intents], {"intents": answers(4)}))
    assert [(r.metric, r.base, r.previous, r.new, r.delta_base, r.delta_previous) for r in table.rows] == [
        ("exact_match", 0.0, None, 1.0, 1.0, None),
        ("contains", 0.0, None, 1.0, 1.0, None),
    ]
    assert table.gates == [] and table.passed and table.misses == []
    with pytest.raises(GateError, match="unknown metric 'eval_loss'"):
        compare(scores_for([intents], {}), None, scores_for([intents], {}), {"eval_loss": "< 2"})


def test_gates_with_several_suites_use_suite_slash_metric(intents: Suite, extract: Suite) -> None:
    predictions = {"intents": answers(3), "extract": {"e0": "42", "e1": "nope"}}
    new = scores_for([intents, extract], predictions, loss=0.5)
    base = scores_for([intents, extract], {}, loss=3.0)
    table = compare(
        base,
        None,
        new,
        {
            "intents/exact_match": ">= 0.75",  # qualified: always allowed
            "contains": ">= 0.8",  # bare: only intents measures it
            "json_valid": "== 1",  # bare: only extract measures it
            "extract/eval_loss": "< 1",  # a loss gate written under a suite entry means the run's loss
        },
    )
    assert [row.metric for row in table.rows] == [
        "intents/exact_match",
        "intents/contains",
        "extract/exact_match",
        "extract/json_valid",
        "eval_loss",
        "perplexity",
    ]
    assert [(g.metric, g.value, g.passed) for g in table.gates] == [
        ("intents/exact_match", 0.75, True),
        ("intents/contains", 0.75, False),
        ("extract/json_valid", 0.5, False),
        ("eval_loss", 0.5, True),
    ]
    with pytest.raises(GateError, match="ambiguous: suites intents, extract all measure it; write 'intents/exact_match'"):
        compare(base, None, new, {"exact_match": ">= 0.5"})
    with pytest.raises(GateError, match="unknown metric 'intents/json_valid'"):
        compare(base, None, new, {"intents/json_valid": ">= 0.5"})
    with pytest.raises(GateError, match="two gates on 'intents/contains'"):
        compare(base, None, new, {"contains": ">= 0.5", "intents/contains": ">= 0.6"})


def test_single_suite_accepts_qualified_gate_names_and_reports_bare_ones(intents: Suite) -> None:
    new = scores_for([intents], {"intents": answers(4)}, loss=0.1)
    table = compare(new, None, new, {"intents/exact_match": ">= 1", "intents/perplexity": "< 2"})
    assert [(g.metric, g.passed) for g in table.gates] == [("exact_match", True), ("perplexity", True)]


def test_a_diverged_model_still_reports_and_fails_its_loss_gate(intents: Suite) -> None:
    new = ModelScores({"intents": SuiteScores(intents, score_predictions(intents, answers(0)))}, math.nan, math.nan)
    table = compare(new, None, new, {"perplexity": "< 100"})
    assert not table.passed
    data = table.as_json()
    assert data["rows"][-1]["new"] == "nan" and data["gates"][0]["value"] == "nan"
    json.dumps(data, allow_nan=False)
