"""How long a run takes, what it costs and whether it fits: the numbers a plan shows.

A plan must price a run before anything trains, with no torch and no GPU, so this module is
arithmetic over a model's shape (catalog.ModelShape) and a flavor (catalog.Flavor):

- FLOPs per token: LoRA/QLoRA ~4N (forward 2N + input gradients 2N), full fine-tuning 6N,
  gradient checkpointing +2N of recomputed forward, plus causal attention
  (reference/unsloth-on-gpu.md, "FLOPs and cost model").
- Time: FLOPs over an effective rate (a GPU's matmul peak x a utilisation that grows with the
  tokens of a micro-batch, calibrated on the H200 measurements), plus memory-bound work per token
  (the loss over the vocabulary, what an architecture leaves uncompiled) over the GPU's bandwidth,
  plus fixed overheads (container start, download, load and the engine's setup, warm-up by
  architecture and compilation, tokenisation, upload). docs/calibration.md, "Held-out error",
  states how far this holds on model shapes it was not fitted on (bench/holdout.py).
- Memory per GPU: weights + trainable state + activations + logits + fixed overheads,
  with per-engine activation coefficients calibrated on the measured peaks.
- Cost: billed minutes x price (HF Jobs bills per started minute).
- Preference methods (dpo, orpo, kto; LoRA adapters): a row is two sequences, prompt + chosen and
  prompt + rejected, both in the micro-batch (tokens, activations and utilisation count both),
  never packed, plus forward-only reference passes (reference_passes) in every step or, with
  precompute_ref_log_probs, once over the data before training. With LoRA the reference is the
  base with the adapter disabled: no second copy of the weights.

Every tunable number is a field of :class:`Calibration` with its source, so a measured run can
recalibrate them without touching the formulas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tuneform.core.errors import TuneformError
from tuneform.estimate.catalog import FLAVORS, PACKED_ARCHITECTURES, Flavor, ModelShape
from tuneform.runfile.spec import GGUF_CONVERTED, PREFERENCE_METHODS

__all__ = [
    "BATCH_LADDER",
    "DEFAULT_CALIBRATION",
    "Calibration",
    "DType",
    "Engine",
    "Estimate",
    "Method",
    "NoFlavorFits",
    "TokenFlops",
    "Workload",
    "choose_flavor",
    "estimate",
    "flops_per_token",
    "forced_flavor_error",
    "reference_passes",
    "smallest_fitting",
]

Method = Literal["lora", "qlora", "full", "dpo", "orpo", "kto"]
Engine = Literal["unsloth", "trl"]
DType = Literal["bf16", "fp16", "fp32"]

GIB = 2**30
BATCH_LADDER: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
"""Micro-batch sizes tried when a run says ``per_device_train_batch_size: auto``."""


def _datasheet_tflops() -> dict[str, float]:
    # Dense (no sparsity) bf16 tensor-core peaks from NVIDIA datasheets; T4 has no bf16, so its
    # fp16 peak. The H200's is the SXM part's. RTX PRO 6000 (Blackwell): ~500 dense bf16.
    return {
        "T4": 65.0,
        "A10G": 125.0,
        "L4": 121.0,
        "L40S": 362.0,
        "A100": 312.0,
        "H100": 989.0,
        "H200": 989.0,
        "RTX PRO 6000": 500.0,
    }


def _measured_tflops() -> dict[str, float]:
    # reference/unsloth-on-gpu.md: "about 790 TFLOP/s measured for a large bf16 matrix product"
    # on the lent H200. A measured rate replaces the datasheet one for its GPU model.
    return {"H200": 790.0}


def _datasheet_bandwidth() -> dict[str, float]:
    # Memory bandwidth (GB/s) from NVIDIA datasheets: a greedy decode step reads every weight
    # once, so generation in evals is bound by it at the small batches the job uses. A100: the
    # 40 GB part's (the slower one).
    return {
        "T4": 320.0,
        "A10G": 600.0,
        "L4": 300.0,
        "L40S": 864.0,
        "A100": 1555.0,
        "H100": 3350.0,
        "H200": 4800.0,
        "RTX PRO 6000": 1792.0,
    }


@dataclass(frozen=True)
class Calibration:
    """Every tunable constant of the estimator, with where its value comes from.

    "measured" values come from reference/unsloth-on-gpu.md (one H200, Llama-3.2-1B shape, LoRA
    r=16 on all 7 projections, bf16, seq 2048) or from a CPU run on this project's dev machine;
    "assumption" values have no measurement yet and are the first to recalibrate from real
    runs (HF Jobs reports durations.schedulingSecs/runningSecs; the job manifest records the
    trainer's tokens/s and peak memory).
    """

    # ---- compute ------------------------------------------------------------------------
    datasheet_tflops: Mapping[str, float] = field(default_factory=_datasheet_tflops)
    measured_tflops: Mapping[str, float] = field(default_factory=_measured_tflops)
    # A large bf16 GEMM reaches 790 of the H200's 989 datasheet TFLOP/s; GPUs without a
    # measurement are assumed to reach the same fraction of their datasheet peak.
    matmul_fraction_of_datasheet: float = 790.0 / 989.0
    # An unknown GPU model is priced like the slowest GPU in the table (T4), so an estimate
    # errs towards longer and dearer, never towards a budget overrun.
    unknown_gpu_tflops: float = 65.0
    # Utilisation u(T) = utilization_max * T / (T + half_utilization_tokens) of the matmul peak,
    # T = real (unpadded) tokens in one GPU's micro-batch, at most gpu_max_micro_batch_tokens.
    # Two curves, for two ways of attending:
    #
    # Packed rows through Unsloth with one varlen flash call per row (train/packed_attention.py;
    # any GPU with bf16, i.e. Ampere or newer, which is also where torch's flash kernels run).
    # Fitted to two steady rates measured through tuneform job on the H200, with torch 2.11 and
    # tuneform's varlen route: Llama-3.2-1B shape, LoRA, batch 16 x 2048 (T = 32,768) -> 78,988
    # tokens/s (the mean of 80,779, 79,484 and 76,700 in bench/results/gpu-2026-11-28-varlen*.md),
    # and Llama-3.1-8B shape, QLoRA, batch 1 x 2048 -> 9,161 tokens/s
    # (bench/results/gpu-llama-8b-qlora-l4cap-2026-11-28-varlen.md). In this module's FLOPs (5.41
    # and 31.9 GFLOP/token: attention priced over the whole 2048-token row, see flops_per_token)
    # solving both (the 8B's half point scaled by 5.12 / 31.9, below) gives 0.742 and 12,834
    # tokens; the bench, which counts attention per document, reports 51.2% and 35.6% MFU.
    # Check: batch 32 ran at 80,021 (predicted 79,012 at the cap). The 8B point is QLoRA, so
    # qlora_speed (1.0) and the curve are not separable with these two runs; an 8B at large
    # batches is an extrapolation. Refitted with vocab_bytes_per_entry (below) taken out of both
    # points' time first (it was 0.742 and 12,834 without it): the curve is the rest of the step.
    varlen_utilization_max: float = 0.9466
    varlen_half_utilization_tokens_h200: float = 19_495.0
    #
    # Everything else (unpacked rows, TRL, and packed rows attended one document at a time, as
    # Unsloth does on a T4 or with compute.attention: per-document): the curve and factors
    # below were fitted before the varlen route existed, when packed rows took that path too.
    # Fitted to Unsloth's two packed, no-checkpointing runs on the H200: batch 8 x 2048 ->
    # 30,652 tok/s and batch 16 x 2048 -> ~34,000 tok/s, at 5.41 GFLOP/token: 21.0% and 23.3%
    # of 790 TFLOP/s. Solving gives 0.262 and 4,030 tokens. The half point counts the work
    # without recomputation (see _flops_per_second). Checks: tuneform job's batch 16 packed ran
    # at 35,213 (predicted 34,046), and 32,201 with compute.attention: per-document beside
    # the varlen runs; the reference's batch 32 packed with checkpointing at ~24,700 (predicted
    # 25,296). Other GPUs, both curves: the half point scaled by the GPU's matmul rate relative
    # to the H200's (assumption: a smaller GPU fills up with fewer tokens).
    utilization_max: float = 0.262
    half_utilization_tokens_h200: float = 4030.0
    # Speed factors relative to that curve. The unpacked ones were fitted with T = batch x the
    # mean example (405 tokens in bench/results/gpu-2026-11-28.md; the reference's data follow
    # the same recipe, 70-800-word chats, so 405 is assumed for its rows too).
    # TRL + PEFT packed: trl 1.14 (tuneform's pin) 11,988 vs Unsloth 30,652 tok/s = 0.39.
    trl_speed_packed: float = 0.39
    # tuneform's trl engine on the varlen route (train/varlen_attention.py: one flash call per
    # layer for a packed row, where the factor above was a dense document mask), relative to the
    # varlen curve without Unsloth's vocabulary term (trl's chunked loss projects only trained
    # tokens): the 1B shape at batch 16 ran at 33,904 tok/s steady on one H100
    # (bench/results/gpu-trl-varlen-2026-12-06.md; the dense mask it replaces ran out of memory at
    # that batch), where that curve, with the H100's holdout factor (x0.897), gives 79,300: 0.428.
    # Fitted on this one run (Unsloth ran the same card, shape and batch at 64,732, run 22).
    trl_speed_varlen: float = 0.428
    # TRL + PEFT unpacked, no checkpointing (the reference, trl 1.15): batch 8 13,177 and batch
    # 32 23,083 tok/s, 0.727 and 0.744 of the curve (18,121 and 31,015): geometric mean 0.735.
    trl_speed_unpacked: float = 0.735
    # TRL's gradient checkpointing costs more than its recomputed FLOPs. tuneform's trl engine
    # (trl 1.14, chunked NLL), batch 8 unpacked with checkpointing, ran at 7,562 tok/s
    # (bench/results/gpu-2026-11-28.md, trl-defaults): 0.490 of the curve's 15,426, and
    # 0.490 / 0.735 = 0.665. (The reference's trl 1.15 ran the same settings at 6,327: 0.564.)
    trl_checkpointing_speed: float = 0.665
    # Unsloth unpacked relative to its packed curve, no checkpointing factor needed: the
    # notebook recipe (batch 2 x 4, checkpointing "unsloth") ran at 5,677 tok/s in
    # bench/results/gpu-2026-11-28.md (0.889 of the curve's 6,386); the reference's batch 8 with
    # checkpointing 14,124 (0.916 of 15,426), batch 8 16,492 (0.910 of 18,121), batch 32 29,545
    # (0.953 of 31,015). Geometric mean, the bench's point (tuneform's own job) counted twice.
    unsloth_speed_unpacked: float = 0.91
    # The curve above was fitted on one model, whose work per token (no recomputation) was
    # 5.12 GFLOP: the Llama-3.2-1B shape at the bench's lengths. The fixed time per micro-batch
    # (host work: launches, the optimizer step) does not grow with the model, so for another
    # model the half point is that fixed time in its own tokens: half x 5.12 / its GFLOP/token.
    reference_gflop_per_token: float = 5.12
    # QLoRA relative to 16-bit LoRA on the same curve. Measured: Llama-3.1-8B shape, QLoRA,
    # Unsloth, batch 1 x 2048 packed (sized for a 24 GB L4, run capped at 22 GiB) ran at 6,056
    # tok/s steady on the H200 = 23.5% MFU (bench/results/gpu-llama-8b-qlora-l4cap-2026-11-28.md),
    # where the LoRA curve says 19.9%: the 4-bit weights cost nothing visible at that size, so 1.0
    # (it was an unmeasured 0.75); the curve itself is 19% low for the 8B shape.
    qlora_speed: float = 1.0
    # DDP: two H200s ran tuneform's batch-16 packed job at 1.74x one GPU over 4,000 conversations
    # and 2.01x over 6,000 with per-document attention (bench/results/gpu-2026-11-28-ddp{,-long}.md;
    # the shorter run's steady window is 27 steps), and at 1.88x over 4,000 with the varlen route
    # (bench/results/gpu-2026-11-28-varlen-ddp.md). 0.9 per GPU keeps the estimate on the side of
    # longer, not shorter.
    multi_gpu_efficiency: float = 0.9
    # Measured on the dev machine (2-core AMD EPYC, torch 2.13 CPU, transformers 5.17, peft
    # 0.21, fp32): SmolLM2-135M shape, LoRA r=16 all-linear, batch 4 x 512 -> 39.7 tokens/s at
    # 0.62 GFLOP/token = 24.6 GFLOP/s of model FLOPs for 2 cores (sgemm alone: 85 GFLOP/s).
    cpu_gflops_per_core: float = 12.3
    # Assumption: on a CPU a larger micro-batch does not train faster (that run was compute-
    # bound at batch 4 x 512), it only costs RAM and optimizer steps; auto stops here.
    cpu_max_auto_batch: int = 4
    # `auto` batch never puts more tokens than this in one GPU's micro-batch. Measured on the
    # H200 through tuneform job (Llama-3.2-1B shape, LoRA, packed 2048): batch 16 ran at 35,213
    # tokens/s steady, batch 32 at 24,724 with per-document attention (bench/results/
    # gpu-2026-11-28-batch16.md and -long-default.md); with the varlen route batch 16 at 80,779
    # and batch 32 at 80,021 (gpu-2026-11-28-varlen.md): past ~32k tokens a bigger batch is no
    # faster and holds twice the memory.
    gpu_max_micro_batch_tokens: int = 32_768

    # ---- memory (bytes) -----------------------------------------------------------------
    # 4-bit NF4 weights (0.5 byte) + bitsandbytes' block constants (double-quantised, ~0.016
    # byte) + slack for the dequantisation buffer: 0.55 per quantised weight. Embeddings, LM
    # head and norms stay 16-bit in QLoRA.
    qlora_bytes_per_param: float = 0.55
    # LoRA adapters train in fp32: weight 4 + gradient 4 + AdamW's two moments 8.
    lora_state_bytes_per_param: float = 16.0
    # Full fine-tuning: gradients in the weights' dtype plus AdamW's two moments in fp32 (8;
    # torch's AdamW on bf16 params would keep bf16 moments, 4: fp32 is the conservative case).
    adamw_moments_bytes_per_param: float = 8.0
    # DDP keeps a flat copy of the gradients in its all-reduce buckets (16-bit).
    ddp_bucket_bytes_per_param: float = 2.0
    # Activation elements saved per token per decoder layer, as multiples of the widths
    # (hidden, q = heads x head_dim, kv = kv_heads x head_dim, intermediate).
    # Unsloth, derived from what its fused kernels keep: hidden x5 (the residual stream at both
    # norms, both norm outputs, the MLP output), q x2 (Q, and the attention output that feeds
    # o_proj), kv x2 (K, V), intermediate x2 (gate and up; its SwiGLU recomputes the product).
    # For the 1B shape: 0.97 MiB/token over 16 layers; the measured packed batch 8 (19.0 GiB)
    # implies 0.98 once weights and overheads are removed.
    unsloth_activation_widths: tuple[float, float, float, float] = (5.0, 2.0, 2.0, 2.0)
    # TRL + PEFT on transformers' eager modules keep more (fp32 copies in RMSNorm, SiLU input
    # and output, repeat_kv'd keys and values). NOT derived: fitted to the TRL+PEFT packed
    # batch-8 peak (41.9 GiB -> 2.4 MiB/token for the 1B shape), then checked on the other rows.
    trl_activation_widths: tuple[float, float, float, float] = (10.0, 6.0, 2.0, 6.0)
    # The trl engine's varlen route (train/varlen_attention.py) keeps fewer: no repeated keys and
    # values (flash reads grouped heads) and no mask. Counted from what autograd saves in
    # transformers' eager layers under PEFT: hidden x6 (each RMSNorm's fp32 input, 2, and its bf16
    # output, 1, at both norms), q x4 (Q before rotary, its rotate_half, Q after, the attention
    # output), kv x4 (the same three for K, and V), intermediate x4 (gate, up, SiLU(gate), the
    # product down_proj reads). That count predicts 56.9 GiB for run 27 (Llama-1B shape, batch 16
    # x 2048; bench/results/gpu-trl-varlen-2026-12-06.md), where 61.8 was measured: the 3 hidden
    # widths more that close the gap are fitted, not derived (62.9 predicted, +2%). The widths
    # above would predict 93.6.
    trl_varlen_activation_widths: tuple[float, float, float, float] = (9.0, 4.0, 4.0, 4.0)
    # With gradient checkpointing, each layer's input (hidden-width) is kept for the backward
    # pass. Unsloth's "unsloth" mode offloads them to CPU RAM: its batch-8 checkpointed peak
    # (3.0 GiB) is the weights, overheads and one layer's activations, no more. TRL keeps them.
    unsloth_checkpoint_kept_widths: float = 0.0
    trl_checkpoint_kept_widths: float = 1.0
    # Logits bytes per vocabulary entry per token at the loss. Unsloth's fused cross-entropy
    # never holds the full logits (its batch-8 checkpointed peak, 3.0 GiB, has no room for the
    # 1.05 GiB of bf16 logits). tuneform's trl engine trains with loss_type chunked_nll
    # (train/engine.py), which holds no full logits either: bench/results/gpu-2026-11-28.md
    # measured 4.6 GiB for TRL batch 8 where 10 bytes/entry predicted 15.0. (Plain
    # transformers' loss would hold bf16 2 + fp32 upcast 4 + fp32 log-softmax 4 = 10 bytes.)
    unsloth_logits_bytes: float = 0.0
    trl_logits_bytes: float = 0.0
    # Except where Unsloth's fused loss is not applied and the full logits come back: Gemma 3 on
    # unsloth 2026.10.9, although it prints its "fused linear cross entropy patch".
    # bench/results/gpu-gemma-3-1b-it-2026-12-06-shapes.md: at batch 16 x 2048 (32,768 tokens x
    # 262,144 vocabulary entries) the job held 70.4 GiB, 32.8 above the 37.6 modelled without
    # logits (4 bytes/entry: the bf16 logits and a bf16 copy), when accelerate's fp32 conversion
    # of the outputs asked for 4 more and ran out; the loss's fp32 gradient follows: 2+2+4+4 = 12.
    unsloth_unfused_logits_bytes: float = 12.0
    unsloth_unfused_architectures: frozenset[str] = frozenset({"gemma3_text"})
    # A zoo architecture with nothing compiled and its layers unfused holds more: LFM2 peaked at
    # 58.8 GiB (run 24) where the same job with the non-block parts compiled peaked at 43.3 (run
    # 23): 15.5 GiB, priced as 16 x 2048 tokens x 65,536 entries = 7.7 bytes per logit (8). It is
    # not the logits (Unsloth's chunked loss runs eager too): through the fused kernels the same
    # LoRA job peaked at 39.3 GiB (bench/results/gpu-lfm2.5-fused-2026-12-06.md), so what the
    # unfused LoRA, SwiGLU and norms keep. Only full fine-tuning still runs unfused (no adapters
    # for train/fused_lfm2.py to route), and is priced with it. Llama-1B with nothing compiled
    # peaked as compiled (32.3 GiB, runs 14 and 22).
    uncompiled_logits_bytes: float = 8.0
    # LFM2's short-convolution layers on Unsloth keep more than the Llama-style widths above
    # price for them (the conv's in_proj output is 3 x hidden, and train/packed_conv.py's
    # stand-in sums in fp32): per hidden unit per conv layer per token. Measured packed: 42.2 GiB
    # at batch 16 x 2048 (run 19; 42.3 and 43.3 in runs 17 and 23) where the widths give 33.8,
    # 8.4 GiB over 32,768 tokens x 10 conv layers x 2048 = 13.4 bytes. The padded path (run 15,
    # rows of 1,066 tokens) is the same within its noise: 23.9 GiB against 18.9, 15.2 bytes.
    conv_activation_bytes_per_hidden: float = 13.4
    # Preference trainers score each answer's tokens from the full logits (TRL 1.14's DPO:
    # selective_log_softmax over the model's output), which stay for the backward pass with their
    # gradient: bf16 2 + 2 bytes per entry. Assumption, not measured yet.
    preference_logits_bytes: float = 4.0
    # Allocator slack, cuBLAS workspaces, fused-loss chunks: Unsloth's batch-8 unpacked peak
    # 7.2 GiB minus the modelled weights (2.30), LoRA state (0.17) and activations (~4.3).
    gpu_fixed_overhead_gb: float = 0.45
    # The CUDA context (~0.5 GiB on recent drivers) is outside torch's peak counters, which is
    # what the reference reports; it still has to fit on the card (assumption).
    cuda_context_gb: float = 0.5
    # Python + torch + transformers resident in RAM when training on the CPU (assumption): the
    # dev-machine run above peaked at 6.8 GiB RSS, of which the modelled tensors are 5.8.
    cpu_runtime_gb: float = 1.0
    # A flavor fits when its memory >= margin x the estimated peak (DESIGN: guardrails).
    memory_margin: float = 1.2

    # ---- fixed overheads (seconds or rates) -----------------------------------------------
    # Assumption: HF Jobs container start (image pull, environment) until the job runs;
    # billed ("Billing is per minute while Starting or Running", reference/hf-jobs.md).
    container_start_s: float = 180.0
    # Assumption: starting a local subprocess and importing torch/transformers.
    local_start_s: float = 15.0
    # Assumption: Hub download of the base model's safetensors (16-bit, 2 bytes/param).
    download_mb_per_s: float = 100.0
    # Reading weights into GPU memory (and quantising them for QLoRA) hardly depends on the size
    # once they are on the machine's disk: the training loop started 10.2-12.5 s after the job
    # began training for the Llama-1B shape (H200, runs 9-10) and 11.6-13.0 s for the 8B QLoRA
    # (runs 11, 13), 13.6 GB more read and quantised in about 1.2 s. 5,000 MB/s is the cautious
    # reading of that (it was an assumed 500).
    load_mb_per_s: float = 5000.0
    # The rest of that time is the engine's setup (patching, adapters, the trainer and its data),
    # after tokenising (tokenize_tokens_per_s) and loading: measured from the job's "training"
    # line to its loop's start (docs/calibration.md, "Held-out error"), less those two, on one
    # H100. Unsloth's own kernels: 8.2 and 8.4 s (Llama-1B, runs 14 and 23), 6.0 s (Qwen3-0.6B,
    # run 18). LFM2 through unsloth_zoo: 17.0, 25.1, 13.6, 12.0 s (runs 19, 23, 24, 17). TRL: 8.4
    # (H200, run 10), 4.6 and 5.0 s (runs 18, 19).
    unsloth_setup_s: float = 7.5
    unsloth_zoo_setup_s: float = 17.0
    trl_setup_s: float = 6.0
    # Warm-up: the training loop's seconds before it reaches the steady rate (compilation, Triton
    # autotuning, the first batches), measured as the loop's seconds less its tokens at the steady
    # rate (docs/calibration.md, "Held-out error"). It depends on how Unsloth trains the
    # architecture (unsloth_zoo_architectures below) and on what is compiled (Workload.compile_mode).
    # Architectures Unsloth trains through its own Triton kernels (Llama, Qwen3, ...): about 10 s
    # whatever is compiled, since the kernels' JIT is the warm-up: Llama-1B on an H100 10.6 s with
    # the blocks compiled (run 14), 11.2 s without (run 23), 10.2 s with nothing compiled (run 22);
    # Qwen3-0.6B 6.7 s (run 18).
    unsloth_native_warmup_s: float = 10.0
    # LFM2 (unsloth_zoo's compiled forward), on fresh H100s: blocks compiled about 45 s (run 19:
    # 43.5 s; run 17: 40.5 s), the blocks eager about 25 s (run 23: 24.7 s), nothing compiled
    # about 2 s (run 24: 1.9 s).
    unsloth_warmup_s: float = 45.0
    unsloth_eager_warmup_s: float = 25.0
    unsloth_uncompiled_warmup_s: float = 2.0
    # Compiling the blocks pays back from here: ~20 s more warm-up on a fresh machine than the
    # rest compiled (runs 19 and 23) against ~3.1 us a token saved (LFM2-1.2B, one H100: 74,019
    # against 60,991 tokens/s steady); the Llama-1B shape gains nothing from it either way.
    # train/engine.py's compute.compile auto reads it.
    compile_min_tokens: int = 6_000_000
    # Below it, an architecture compiles nothing, where the short warm-up beats every compiled
    # loop. LFM2-1.2B on one H100 with nothing compiled, through the fused kernels: 49,430 tokens/s
    # steady after a 1.9 s warm-up (bench/results/gpu-lfm2.5-fused-2026-12-06.md), against the
    # blocks compiled (run 19: 74,019 after about 45 s) and the rest compiled (run 23: 60,991 after
    # about 25 s). Equal loops at T/49,430 + 2 = T/74,019 + 45: T = 6.4M tokens (and the rest
    # compiled never wins: equal to nothing compiled at 6.0M). Checked before compile_min_tokens.
    # The Llama family trains through Unsloth's own kernels, where nothing compiled buys nothing
    # (run 22).
    uncompiled_below_tokens: Mapping[str, int] = field(default_factory=lambda: {"lfm2": 6_400_000})
    # Plain TRL on a GPU (no compilation): the loop's seconds beyond its tokens at the steady
    # rate, for trl-defaults: 11.0 s (H200, run 10), 8.1 and 7.4 s (H100, runs 18 and 19). Those
    # rows are padded to each batch's longest, so the first steps keep meeting new shapes (each a
    # new choice of matrix kernels); packed rows are all one length, and the trl engine's packed
    # varlen route reached its rate at once: 0.2 s (H100, run 27). With no Triton kernel to build
    # either, its warm-up is taken as 1 s.
    trl_warmup_s: float = 9.0
    trl_packed_warmup_s: float = 1.0

    # ---- time past the matmul curve (memory-bound work, in bytes per token) ----------------
    # Divided by the GPU's memory bandwidth (memory_bandwidth_gb_s), added to each token's time.
    # The LM head's loss reads and writes every vocabulary entry of every token a few times
    # (logits, their softmax, its gradient), whatever the model's width: a large vocabulary on
    # a small model is a large share of its step. Solved, with the varlen curve refitted beside
    # it, from one H100's steady rates on the same data and batch (16 x 2048 packed): Qwen3-0.6B
    # (vocab 151,936) 80,031 tokens/s (run 18) against Llama-1B (vocab 128,256) 63,887 (the mean
    # of runs 14, 22 and 23), a ratio the card's own speed factor cancels out of: 50.4. That is
    # more than a fused loss moves (10-16 bytes: bf16 logits written and read, their gradient),
    # so read it as the head's whole cost beyond its FLOPs at the curve's rate, in bytes' worth.
    vocab_bytes_per_entry: float = 50.4
    # Architectures Unsloth trains through unsloth_zoo's torch.compile'd forward and loss
    # rather than its own Triton kernels: for them what is compiled changes the steady rate,
    # the memory and the warm-up (runs 19-24 on LFM2; Llama-1B is the same either way, runs
    # 14, 22, 23).
    unsloth_zoo_architectures: tuple[str, ...] = ("lfm2",)
    # LFM2's short-convolution layers with the decoder blocks eager: 3.1 us a token slower on an
    # H100 (runs 19 and 23: 74,019 against 60,991 tokens/s), over 10 conv layers of width 2048 at
    # 3,350 GB/s: 3.1e-6 x 3.35e12 / (10 x 2048) = 507 bytes per conv layer per hidden unit.
    conv_eager_bytes_per_hidden: float = 507.0
    # With nothing compiled (UNSLOTH_COMPILE_DISABLE), a zoo architecture's elementwise work runs
    # outside the compiler. An adapter job on LFM2 goes through Unsloth's fused LoRA, SwiGLU and
    # RMSNorm kernels (train/fused_lfm2.py): 3.8 us a token slower than the rest compiled (one
    # H100: 49,430 tokens/s, bench/results/gpu-lfm2.5-fused-2026-12-06.md, against run 23's
    # 60,991), over 16 layers of width 2048 at 3,350 GB/s: 392 bytes per layer per hidden unit.
    fused_uncompiled_bytes_per_hidden: float = 392.0
    # Full fine-tuning has no adapters to route (and QLoRA's 4-bit ones are not routed), so its
    # layers stay unfused: 8.2 us a token slower than the rest compiled, measured on a LoRA job
    # before the fused kernels (run 24: 40,596 against 60,991): 843 bytes per layer per hidden unit.
    uncompiled_bytes_per_hidden: float = 843.0
    # Assumption: tokenising with the `tokenizers` Rust backend via datasets.map.
    tokenize_tokens_per_s: float = 500_000.0
    # Assumption: Hub upload bandwidth and per-commit latency.
    upload_mb_per_s: float = 50.0
    upload_commit_s: float = 10.0
    # Assumptions, not measured yet: exports (output.save). Merging LoRA into the base writes the
    # 16-bit weights (for merged/, or as llama.cpp's input); convert_hf_to_gguf.py reads them and
    # writes one file per f16/bf16/q8_0; llama-quantize reads an f16 file per k-quant (CPU-bound).
    merge_write_mb_per_s: float = 300.0
    gguf_convert_mb_per_s: float = 200.0
    gguf_quantize_mb_per_s: float = 100.0

    # ---- evaluation: generating the suites' answers -------------------------------------
    # Prompts are a forward pass (priced like held-out tokens); each generated token is one
    # decode step of its batch, and a step costs at least a read of every weight plus the host
    # work of transformers' generate (python, one launch per kernel, the cache update).
    # Assumption, not measured yet: 30 ms of host time per step; the datasheet bandwidth above;
    # the slowest GPU's bandwidth for an unknown one; 20 GB/s on a CPU.
    decode_step_overhead_s: float = 0.03
    memory_bandwidth_gb_s: Mapping[str, float] = field(default_factory=_datasheet_bandwidth)
    unknown_gpu_bandwidth_gb_s: float = 300.0
    cpu_bandwidth_gb_s: float = 20.0

    # ---- a repository's own runs --------------------------------------------------------
    # Measured over estimated, per GPU model ("H200"; "cpu" for CPU flavors), from the manifests
    # of the repository's trained versions: `tuneform calibrate` computes them and
    # [tool.tuneform.calibration] carries them. Speed multiplies the training rate; memory the
    # estimated peak of torch's allocations (everything but the CUDA context), on GPUs only.
    speed_by_gpu: Mapping[str, float] = field(default_factory=dict)
    memory_by_gpu: Mapping[str, float] = field(default_factory=dict)


DEFAULT_CALIBRATION = Calibration()


CompileMode = Literal["blocks", "off", "none"]
"""What Unsloth compiles: each decoder block and the rest (blocks), all but the blocks (off), or
nothing at all (none, UNSLOTH_COMPILE_DISABLE=1)."""


def compile_mode(setting: str, train_tokens: int, architecture: str) -> CompileMode:
    """What Unsloth compiles for a job training `train_tokens` of this architecture:
    `compute.compile` when on or off; auto compiles the blocks from compile_min_tokens, where the
    faster steps repay the compilation, and nothing below the architecture's
    uncompiled_below_tokens, where the short warm-up beats any faster steps (checked first: for
    LFM2 it lies above compile_min_tokens). The plan decides by this rule and the job applies the
    plan's choice (job/pipeline.py), so the estimate prices what runs."""
    cal = DEFAULT_CALIBRATION
    if setting != "auto":
        return "blocks" if setting == "on" else "off"
    if train_tokens < cal.uncompiled_below_tokens.get(architecture, 0):
        return "none"
    return "blocks" if train_tokens >= cal.compile_min_tokens else "off"


def gpu_key(flavor: Flavor) -> str:
    """The key a flavor's calibration is kept under: its GPU model, or "cpu"."""
    return flavor.gpu_model or "cpu"


def reference_passes(method: Method, precomputed: bool) -> tuple[float, float]:
    """Forward-only passes a preference method adds per trained token: (in every step, once over
    the data before training).

    DPO scores each sequence with the reference model: one forward per token in each step, or once
    over the data when precomputed (TRL's precompute_ref_log_probs), which saves every later
    epoch's. KTO also scores a mismatched prompt-answer sequence per row for its KL term, with the
    policy and the reference (TRL 1.14, under no_grad): three forwards per token in each step, or
    the policy's one in each step and the reference's two once when precomputed. ORPO has no
    reference model; supervised methods neither.
    """
    if method == "dpo":
        return (0.0, 1.0) if precomputed else (1.0, 0.0)
    if method == "kto":
        return (1.0, 2.0) if precomputed else (3.0, 0.0)
    return (0.0, 0.0)


@dataclass(frozen=True)
class Workload:
    """What a run asks to train, reduced to what cost and memory depend on.

    ``train_tokens`` is the total over all epochs. ``batch_size`` None means "auto" (the
    largest micro-batch that fits); ``gradient_checkpointing`` None means "only if it pays":
    see :func:`estimate`. Without packing, rows are padded examples: ``max_example_tokens``
    (the longest example, capped by ``seq_len``) sizes the memory peak and
    ``mean_example_tokens`` the work (attention and the GPU's utilisation); both default to
    ``seq_len`` (the safe side).
    ``eval_tokens`` are tokens scored forward-only by the evaluation (held-out rows and the
    suites' prompts, over every model the job scores); ``eval_decode_tokens`` are the tokens
    the suites generate, in ``eval_decode_steps`` sequential decode steps (one per generated
    token of a batch of rows).
    A preference method's rows are pairs: ``train_tokens`` counts both sequences, and the example
    lengths are of one sequence. ``precompute_reference`` scores the reference model once over
    ``reference_data_tokens`` (one epoch of the training data, both sequences) instead of in each
    step.
    """

    shape: ModelShape
    train_tokens: int
    seq_len: int = 2048
    method: Method = "lora"
    lora_r: int = 16
    target_modules: str | tuple[str, ...] = "all-linear"
    batch_size: int | None = None
    grad_accum: int = 1
    gradient_checkpointing: bool | None = None
    packing: bool = True
    engine: Engine = "unsloth"
    eval_tokens: int = 0
    eval_decode_tokens: int = 0
    eval_decode_steps: int = 0
    mean_example_tokens: int | None = None
    max_example_tokens: int | None = None
    exports: tuple[str, ...] = ("adapter",)  # output.save: adapter, merged, gguf:<quant>
    # compute.compile: Unsloth's block compilation. "none" (nothing compiled, as with
    # UNSLOTH_COMPILE_DISABLE=1) is not a run-file setting: the bench measures it.
    compile: Literal["auto", "on", "off", "none"] = "auto"
    precompute_reference: bool = False
    reference_data_tokens: int = 0

    @property
    def sequences_per_row(self) -> int:
        """Sequences one row of the micro-batch holds: a pair's two, or one."""
        return 2 if self.method in PREFERENCE_METHODS else 1

    @property
    def packs(self) -> bool:
        """Whether the job packs: asked for, and exact for the architecture. The job refuses
        packing elsewhere and trains on the padded path (train/packing.py), priced as such."""
        return self.packing and self.shape.architecture in PACKED_ARCHITECTURES

    @property
    def compile_mode(self) -> CompileMode:
        """What Unsloth compiles for this job (see compile_mode)."""
        if self.compile == "none":
            return "none"
        return compile_mode(self.compile, self.train_tokens, self.shape.architecture)

    @property
    def trainable_params(self) -> int:
        """Parameters that get gradients and optimizer state."""
        if self.method == "full":
            return self.shape.params
        return self.shape.lora_params(self.lora_r, self.target_modules)

    @property
    def row_tokens(self) -> int:
        """Tokens in one row of a micro-batch: what activation memory scales with.

        A packed row is ``seq_len`` long (or the whole data set, when that is shorter); an
        unpacked row is padded to the longest example.
        """
        length = self.seq_len if self.packs else min(self.seq_len, self.max_example_tokens or self.seq_len)
        if self.train_tokens > 0:
            length = min(length, self.train_tokens)
        return max(1, length)

    @property
    def real_row_tokens(self) -> int:
        """Real (unpadded) tokens in one row on average: a packed row, or the mean example.

        What a row trains on, and so what the time depends on: attention runs over each
        example's own tokens, and the measured unpacked speeds follow the real tokens of a
        micro-batch rather than its padded size (docs/calibration.md). Padding only costs
        memory, which ``row_tokens`` sizes.
        """
        if self.packs:
            return self.row_tokens
        mean = self.mean_example_tokens or self.max_example_tokens or self.seq_len
        return max(1, min(mean, self.row_tokens))


@dataclass(frozen=True)
class TokenFlops:
    """FLOPs for one trained token, split so MFU and hardware time can both be derived."""

    linear: float
    attention: float
    recompute: float
    reference: float = 0.0  # a preference method's forward-only reference passes in each step

    @property
    def model(self) -> float:
        """FLOPs without recomputation: the numerator of MFU (DESIGN: the CLI contract)."""
        return self.linear + self.attention

    @property
    def hardware(self) -> float:
        """FLOPs the GPU actually executes, recomputation and reference passes included: what
        time depends on."""
        return self.model + self.recompute + self.reference


def _mean_context(length: float, window: int | None) -> float:
    """Mean number of keys a query attends to in a causal row of ``length`` tokens.

    Full attention: (length + 1) / 2, taken as length / 2 as in the reference's formula. With
    a sliding window w < length, the first w queries see 1..w keys and the rest w each.
    """
    if window is None or length <= window:
        return length / 2
    return window - window * window / (2 * length)


def flops_per_token(
    shape: ModelShape,
    *,
    method: Method,
    lora_params: int,
    attended_tokens: int,
    gradient_checkpointing: bool,
    reference_passes: float = 0.0,
) -> TokenFlops:
    """Training FLOPs per token (reference/unsloth-on-gpu.md, "FLOPs and cost model").

    Linear: 2 FLOPs per multiply-add through ``shape.matmul_params`` forward, the same again for
    input gradients, and for full fine-tuning the same again for weight gradients (4N or 6N);
    the adapters add 6 per LoRA parameter. Attention: 12 x heads x head_dim x (mean keys per
    query) per layer, forward and backward. Gradient checkpointing recomputes the decoder
    layers' forward (2 x their parameters, plus the forward third of attention); the LM head
    is not recomputed, which is why unsloth's counter shows +2.0 (not +2.5) GFLOP/token for the
    1B shape. A reference pass is a forward through the base (its adapter disabled): 2N plus the
    forward third of attention, ``reference_passes`` times.
    """
    n = shape.matmul_params
    trainable_adapters = 0 if method == "full" else lora_params
    linear = (6.0 if method == "full" else 4.0) * n + 6.0 * trainable_adapters

    full_layers = shape.num_layers if shape.full_attention_layers is None else shape.full_attention_layers
    other_layers = shape.num_layers - full_layers
    context = full_layers * _mean_context(attended_tokens, None)
    if shape.sliding_window is not None:
        context += other_layers * _mean_context(attended_tokens, shape.sliding_window)
    attention = 12.0 * shape.q_dim * context

    recompute = 0.0
    if gradient_checkpointing:
        recompute = 2.0 * (shape.layer_params + trainable_adapters) + attention / 3
    reference = reference_passes * _forward_flops(shape, attention)
    return TokenFlops(linear=linear, attention=attention, recompute=recompute, reference=reference)


def _forward_flops(shape: ModelShape, attention: float) -> float:
    """FLOPs per token of a forward pass alone (no gradients): 2N and the forward third of
    attention. What scoring and a reference model's passes cost."""
    return 2.0 * shape.matmul_params + attention / 3


@dataclass(frozen=True)
class Estimate:
    """One run on one flavor: time, cost, memory and the settings they assume.

    ``peak_vram_gb`` is the peak per GPU (per replica on CPU) in GiB, CUDA context included;
    ``memory_gb`` is what one GPU (or the CPU machine) has. ``fits`` means memory_gb >=
    margin x peak and nothing else rules the flavor out (``problems`` says why not).
    """

    flavor: Flavor
    engine: Engine
    dtype: DType
    tokens: int
    batch_size: int
    gradient_checkpointing: bool
    flops_per_token: TokenFlops
    flops: float
    hardware_flops: float
    tokens_per_second: float
    mfu: float | None
    seconds: float
    billed_minutes: int
    usd: float
    peak_vram_gb: float
    memory_gb: float
    fits: bool
    seconds_breakdown: Mapping[str, float]
    memory_breakdown: Mapping[str, float]
    problems: tuple[str, ...] = ()
    # What Unsloth compiles (compile_mode); None for the trl engine and CPUs. The job applies it.
    compile: CompileMode | None = None
    # What scoring costs within this job (its share of the billed time), and what a job that
    # only scores (the `evaluate` action: no training, no weights to upload) costs on its own.
    eval_seconds: float = 0.0
    eval_usd: float = 0.0
    evaluate_seconds: float = 0.0
    evaluate_usd: float = 0.0
    # The repository's factors applied, {"gpu", "speed", "memory"}: a finished run's manifest
    # keeps them, so the next recalibration compares against the estimate without them.
    calibration: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The plan's ``estimate`` object (DESIGN: tokens, seconds, usd, peak_vram_gb) plus
        the settings and breakdowns behind it."""
        return {
            "tokens": self.tokens,
            "seconds": round(self.seconds),
            "usd": round(self.usd, 4),
            "peak_vram_gb": round(self.peak_vram_gb, 2),
            "flavor": self.flavor.name,
            "memory_gb": round(self.memory_gb, 2),
            "fits": self.fits,
            "engine": self.engine,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "gradient_checkpointing": self.gradient_checkpointing,
            "flops": self.flops,
            "tokens_per_second": round(self.tokens_per_second, 1),
            "mfu": None if self.mfu is None else round(self.mfu, 4),
            "billed_minutes": self.billed_minutes,
            "breakdown": {
                "seconds": {key: round(value, 1) for key, value in self.seconds_breakdown.items()},
                "memory_gb": {key: round(value, 3) for key, value in self.memory_breakdown.items()},
            },
            "problems": list(self.problems),
            "calibration": dict(self.calibration),
            "eval_seconds": round(self.eval_seconds),
            "eval_usd": round(self.eval_usd, 4),
            "evaluate_seconds": round(self.evaluate_seconds),
            "evaluate_usd": round(self.evaluate_usd, 4),
            "compile": self.compile,
        }


class NoFlavorFits(TuneformError, ValueError):
    """No allowed flavor can train the workload; the message says what it needs."""


# --------------------------------------------------------------------------------------------
# Rates and memory
# --------------------------------------------------------------------------------------------


def _matmul_tflops(flavor: Flavor, cal: Calibration) -> float:
    """A GPU's achievable dense bf16/fp16 matmul rate (TFLOP/s): measured, else derived."""
    model = flavor.gpu_model or ""
    if model in cal.measured_tflops:
        return cal.measured_tflops[model]
    datasheet = cal.datasheet_tflops.get(model, cal.unknown_gpu_tflops)
    return datasheet * cal.matmul_fraction_of_datasheet


def _dtype(flavor: Flavor) -> DType:
    """bf16 where the hardware has it; fp16 on pre-Ampere GPUs (T4); fp32 on a CPU."""
    if flavor.is_cpu:
        return "fp32"
    return "bf16" if flavor.bf16 else "fp16"


def _engine(workload: Workload, flavor: Flavor) -> Engine:
    """Unsloth needs a GPU; on a CPU the job trains with plain TRL whatever the run asks."""
    return "trl" if flavor.is_cpu else workload.engine


def _memory_gb(
    workload: Workload,
    flavor: Flavor,
    engine: Engine,
    batch_size: int,
    checkpointing: bool,
    cal: Calibration,
) -> dict[str, float]:
    """Peak memory of one replica, by component, in GiB."""
    shape = workload.shape
    value_bytes = 4.0 if flavor.is_cpu else 2.0  # fp32 on CPU, bf16/fp16 on GPU

    if workload.method == "qlora":
        quantised = shape.linear_params
        weights = quantised * cal.qlora_bytes_per_param + (shape.params - quantised) * value_bytes
    else:
        weights = shape.params * value_bytes

    trainable = workload.trainable_params
    if workload.method == "full":
        state_per_param = value_bytes + cal.adamw_moments_bytes_per_param
    else:
        state_per_param = cal.lora_state_bytes_per_param
    state = trainable * state_per_param
    if flavor.gpus > 1:
        state += trainable * cal.ddp_bucket_bytes_per_param

    if engine == "unsloth":
        widths = cal.unsloth_activation_widths
    else:
        widths = cal.trl_varlen_activation_widths if _attends_packed_rows_at_once(workload, flavor) else cal.trl_activation_widths
    per_layer_elements = (
        widths[0] * shape.hidden_size + widths[1] * shape.q_dim + widths[2] * shape.kv_dim + widths[3] * shape.intermediate_size
    )
    tokens = batch_size * workload.sequences_per_row * workload.row_tokens
    if checkpointing:
        # Each layer's input is kept and one layer's activations are rebuilt at a time.
        kept = cal.unsloth_checkpoint_kept_widths if engine == "unsloth" else cal.trl_checkpoint_kept_widths
        activation_elements = kept * shape.num_layers * shape.hidden_size + per_layer_elements
    else:
        activation_elements = shape.num_layers * per_layer_elements
    activations = tokens * activation_elements * value_bytes
    if engine == "unsloth" and not checkpointing and not flavor.is_cpu:
        activations += tokens * shape.conv_layers * shape.hidden_size * cal.conv_activation_bytes_per_hidden

    logits = tokens * shape.vocab_size * _logits_bytes(workload, engine, cal)

    parts = {"weights": weights / GIB, "optimizer_and_grads": state / GIB, "activations": activations / GIB, "logits": logits / GIB}
    if flavor.is_cpu:
        return {**parts, "runtime": cal.cpu_runtime_gb}
    parts["allocator"] = cal.gpu_fixed_overhead_gb
    factor = cal.memory_by_gpu.get(gpu_key(flavor), 1.0)
    if factor != 1.0:
        parts["calibration"] = (factor - 1.0) * sum(parts.values())
    return {**parts, "cuda_context": cal.cuda_context_gb}


def _logits_bytes(workload: Workload, engine: Engine, cal: Calibration) -> float:
    """Bytes per vocabulary entry per token that the loss holds at once: none where it is fused
    (Unsloth's kernels, tuneform's chunked NLL on TRL), the full logits where it is not (Gemma 3
    on Unsloth, a preference trainer's answer log-probabilities), and the per-logit price of an
    unfused LFM2 job with nothing compiled (Calibration.uncompiled_logits_bytes)."""
    if workload.method in PREFERENCE_METHODS:
        return cal.preference_logits_bytes
    if engine == "trl":
        return cal.trl_logits_bytes
    architecture = workload.shape.architecture
    if architecture in cal.unsloth_unfused_architectures:
        return cal.unsloth_unfused_logits_bytes
    if workload.compile_mode == "none" and architecture in cal.unsloth_zoo_architectures and not fused_when_uncompiled(workload.method):
        return cal.uncompiled_logits_bytes  # the unfused layers' extra, priced per logit (Calibration)
    return cal.unsloth_logits_bytes


def fused_when_uncompiled(method: Method) -> bool:
    """Whether the estimate prices a zoo architecture's job with nothing compiled as running
    through Unsloth's fused kernels (train/fused_lfm2.py routes LoRA layers). Full fine-tuning has
    none; QLoRA's 4-bit LoRA layers keep PEFT's forward (only its feed-forwards and norms fuse), so
    it is priced unfused too, a price that errs high. bench/holdout.py prices a run only where
    what it recorded is what this says."""
    return method not in ("full", "qlora")


def _speed_factor(workload: Workload, engine: Engine, checkpointing: bool, varlen: bool, cal: Calibration) -> float:
    """Measured slowdowns relative to Unsloth's packed LoRA path (the utilisation curve's fit)."""
    factor = 1.0
    if engine == "trl":
        if workload.packs:
            factor *= cal.trl_speed_varlen if varlen else cal.trl_speed_packed
        else:
            factor *= cal.trl_speed_unpacked
        if checkpointing:
            factor *= cal.trl_checkpointing_speed
    elif not workload.packs:
        factor *= cal.unsloth_speed_unpacked
    if workload.method == "qlora":
        factor *= cal.qlora_speed
    return factor


def _attends_packed_rows_at_once(workload: Workload, flavor: Flavor) -> bool:
    """Whether the job attends each packed row in one varlen flash call (train/packed_attention.py).

    Both engines do for packed rows on GPUs with torch's flash kernels (Unsloth through its own
    dispatch, the trl engine through train/varlen_attention.py), which need Ampere (sm_80) or
    newer: the same GPUs that have bf16, the one fact the catalog keeps about a GPU's generation.
    """
    return workload.packs and not flavor.is_cpu and flavor.bf16


def _flops_per_second(
    workload: Workload,
    flavor: Flavor,
    engine: Engine,
    batch_size: int,
    checkpointing: bool,
    flops: TokenFlops,
    cal: Calibration,
) -> float:
    """Hardware FLOP/s the whole flavor sustains on this workload.

    A GPU's utilisation grows with the real tokens T of its micro-batch (padding is not work),
    up to ``gpu_max_micro_batch_tokens``, past which the H200 got no faster. u(T) = max x T /
    (T + half) amounts to a fixed time per micro-batch, half tokens' worth of work at the full
    rate, on top of the compute. That fixed time is the same for every model and for
    checkpointing (which adds FLOPs to every token, not to the fixed part): the half point is
    the reference model's, in this workload's hardware FLOPs per token. Fitted that way, one
    Unsloth factor covers its unpacked runs with and without checkpointing (the reference's
    batch 8 lost only x0.86 to it, the bench's batch-2 notebook recipe fits too) and the packed
    batch-32 checkpointed run still checks (docs/calibration.md).
    """
    measured = cal.speed_by_gpu.get(gpu_key(flavor), 1.0)
    if flavor.is_cpu:
        return (flavor.cpus or 1) * cal.cpu_gflops_per_core * 1e9 * measured
    peak = _matmul_tflops(flavor, cal)
    reference_peak = cal.measured_tflops.get("H200", 790.0)
    varlen = _attends_packed_rows_at_once(workload, flavor)
    if varlen:
        most, half_h200 = cal.varlen_utilization_max, cal.varlen_half_utilization_tokens_h200
    else:
        most, half_h200 = cal.utilization_max, cal.half_utilization_tokens_h200
    half = half_h200 * peak / reference_peak * cal.reference_gflop_per_token * 1e9 / flops.hardware
    micro_batch_tokens = min(batch_size * workload.sequences_per_row * workload.real_row_tokens, cal.gpu_max_micro_batch_tokens)
    utilization = most * micro_batch_tokens / (micro_batch_tokens + half)
    per_gpu = peak * 1e12 * utilization * _speed_factor(workload, engine, checkpointing, varlen, cal)
    return per_gpu * _gpu_scaling(flavor, cal) * measured


def _gpu_scaling(flavor: Flavor, cal: Calibration) -> float:
    """How many GPUs' worth of work a flavor does at once (DDP loses a little to each extra GPU)."""
    return flavor.gpus * (cal.multi_gpu_efficiency if flavor.gpus > 1 else 1.0)


def _memory_bound_seconds_per_token(workload: Workload, flavor: Flavor, engine: Engine, cal: Calibration) -> float:
    """Seconds per trained token, whole flavor, that the matmul curve does not see: work bound by
    memory bandwidth, priced as bytes moved over the GPU's bandwidth (Calibration, "time past
    the matmul curve"). The LM head's loss over the vocabulary on the path whose curve was
    refitted with it (Unsloth's packed varlen rows; the other paths' factors were fitted on one
    model and hold its vocabulary's share), and for the architectures Unsloth trains through
    unsloth_zoo what is left uncompiled: the short-convolution layers when the blocks are
    eager, every layer's elementwise work when nothing is."""
    if flavor.is_cpu:
        return 0.0
    shape = workload.shape
    moved = 0.0
    # trl's chunked loss projects only the trained tokens: its factor holds what that costs.
    if engine == "unsloth" and _attends_packed_rows_at_once(workload, flavor):
        moved += cal.vocab_bytes_per_entry * shape.vocab_size
    if engine == "unsloth" and shape.architecture in cal.unsloth_zoo_architectures:
        mode = workload.compile_mode
        if mode != "blocks":
            moved += cal.conv_eager_bytes_per_hidden * shape.conv_layers * shape.hidden_size
        if mode == "none":
            per_hidden = (
                cal.fused_uncompiled_bytes_per_hidden if fused_when_uncompiled(workload.method) else cal.uncompiled_bytes_per_hidden
            )
            moved += per_hidden * shape.num_layers * shape.hidden_size
    if moved == 0.0:
        return 0.0
    measured = cal.speed_by_gpu.get(gpu_key(flavor), 1.0)
    return moved / (_bandwidth_gb_s(flavor, cal) * 1e9) / (_gpu_scaling(flavor, cal) * measured)


def _bandwidth_gb_s(flavor: Flavor, cal: Calibration) -> float:
    """Memory bandwidth of one GPU (or the CPU machine) in GB/s: what a decode step is bound by."""
    if flavor.is_cpu:
        return cal.cpu_bandwidth_gb_s
    return cal.memory_bandwidth_gb_s.get(flavor.gpu_model or "", cal.unknown_gpu_bandwidth_gb_s)


def _evaluation_seconds(workload: Workload, flavor: Flavor, rate: float, flops: TokenFlops, cal: Calibration) -> float:
    """Seconds the job spends scoring: held-out loss, the suites' prompts, and their generation.

    Forward-only work is the 2N forward third of the linear FLOPs and of attention. Generation
    adds, for every decode step, a read of every weight (16-bit on a GPU, fp32 on a CPU) and
    the host overhead of one step, whatever the batch: the term that makes a 20,000-row suite
    cost what it does, since rows decode in batches but tokens one step at a time.
    """
    shape = workload.shape
    compute = (workload.eval_tokens + workload.eval_decode_tokens) * _forward_flops(shape, flops.attention) / rate
    weight_bytes = shape.params * (4.0 if flavor.is_cpu else 2.0)
    per_step = cal.decode_step_overhead_s + weight_bytes / (_bandwidth_gb_s(flavor, cal) * 1e9)
    return compute + workload.eval_decode_steps * per_step


def _warmup_seconds(workload: Workload, flavor: Flavor, engine: Engine, cal: Calibration) -> float:
    """Seconds the training loop takes to reach its steady rate (Calibration, "Warm-up")."""
    if flavor.is_cpu:
        return 0.0
    if engine == "trl":
        return cal.trl_packed_warmup_s if _attends_packed_rows_at_once(workload, flavor) else cal.trl_warmup_s
    if workload.shape.architecture not in cal.unsloth_zoo_architectures:
        return cal.unsloth_native_warmup_s
    return {"blocks": cal.unsloth_warmup_s, "off": cal.unsloth_eager_warmup_s, "none": cal.unsloth_uncompiled_warmup_s}[
        workload.compile_mode
    ]


def _setup_seconds(workload: Workload, flavor: Flavor, engine: Engine, cal: Calibration) -> float:
    """Seconds the engine takes to set training up once the weights are loaded (GPU only: the
    CPU profile's start covers it)."""
    if flavor.is_cpu:
        return 0.0
    if engine == "trl":
        return cal.trl_setup_s
    return cal.unsloth_zoo_setup_s if workload.shape.architecture in cal.unsloth_zoo_architectures else cal.unsloth_setup_s


def _seconds(
    workload: Workload,
    flavor: Flavor,
    engine: Engine,
    rate: float,
    flops: TokenFlops,
    seconds_per_token: float,
    cal: Calibration,
) -> dict[str, float]:
    """Wall-clock seconds of the job by phase."""
    shape = workload.shape
    mb = 1e6
    start = cal.local_start_s if flavor.name == "local" else cal.container_start_s
    download = shape.params * 2 / (cal.download_mb_per_s * mb)
    load = shape.params * 2 / (cal.load_mb_per_s * mb) + _setup_seconds(workload, flavor, engine, cal)
    warmup = _warmup_seconds(workload, flavor, engine, cal)
    tokenize = (workload.train_tokens + workload.eval_tokens) / cal.tokenize_tokens_per_s
    train = workload.train_tokens * seconds_per_token
    evaluate = _evaluation_seconds(workload, flavor, rate, flops, cal)
    export, export_bytes = _export_work(workload, cal)
    # The root export: a LoRA adapter's fp32 tensors, or 16-bit weights (merged or full).
    root_bytes = workload.trainable_params * 4.0 if "adapter" in workload.exports else shape.params * 2.0
    upload = cal.upload_commit_s + (root_bytes + export_bytes) / (cal.upload_mb_per_s * mb)
    phases = {
        "start": start,
        "download": download,
        "load": load,
        "warmup": warmup,
        "tokenize": tokenize,
        "train": train,
        "evaluate": evaluate,
        "export": export,
        "upload": upload,
    }
    if workload.method in PREFERENCE_METHODS:  # scoring the reference once before training (precomputed)
        once = reference_passes(workload.method, workload.precompute_reference)[1]
        phases["reference"] = workload.reference_data_tokens * once * _forward_flops(shape, flops.attention) / rate
    return phases


# Bits a weight of each GGUF quantization takes, for the upload (llama.cpp's quantize table,
# rounded); the embeddings and output head kept at higher precision are ignored.
GGUF_BITS = {
    "f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q6_k": 6.6, "q5_k_m": 5.7, "q5_k_s": 5.5, "q5_1": 6.0, "q5_0": 5.5,
    "q4_k_m": 4.9, "q4_k_s": 4.6, "q4_1": 5.0, "q4_0": 4.5, "q3_k_l": 4.3, "q3_k_m": 3.9, "q3_k_s": 3.5, "q2_k": 3.4,
}  # fmt: skip


def _export_work(workload: Workload, cal: Calibration) -> tuple[float, float]:
    """Seconds the exports beyond the root take after training (merge, conversion, quantization)
    and the bytes they add to the upload. Merged weights beside an adapter, or as the
    converter's input, are written once; each k-quant is made from one f16 file."""
    weights = workload.shape.params * 2.0
    mb = 1e6
    quants = [name.removeprefix("gguf:") for name in workload.exports if name.startswith("gguf:")]
    merges = workload.method != "full" and ("merged" in workload.exports or bool(quants))
    seconds = weights / (cal.merge_write_mb_per_s * mb) if merges else 0.0
    converted = [q for q in quants if q in GGUF_CONVERTED]
    quantized = [q for q in quants if q not in converted]
    conversions = len(converted) + (1 if quantized and "f16" not in converted else 0)
    seconds += conversions * weights / (cal.gguf_convert_mb_per_s * mb)
    seconds += len(quantized) * weights / (cal.gguf_quantize_mb_per_s * mb)
    extra = weights if "merged" in workload.exports and "adapter" in workload.exports else 0.0
    extra += sum(workload.shape.params * GGUF_BITS.get(q, 16.0) / 8 for q in quants)
    return seconds, extra


# --------------------------------------------------------------------------------------------
# Estimates
# --------------------------------------------------------------------------------------------


def _estimate_with(
    workload: Workload,
    flavor: Flavor,
    batch_size: int,
    checkpointing: bool,
    cal: Calibration,
) -> Estimate:
    """The estimate for fixed settings (no search)."""
    engine = _engine(workload, flavor)
    dtype = _dtype(flavor)
    lora = 0 if workload.method == "full" else workload.trainable_params
    flops = flops_per_token(
        workload.shape,
        method=workload.method,
        lora_params=lora,
        attended_tokens=workload.real_row_tokens,
        gradient_checkpointing=checkpointing,
        reference_passes=reference_passes(workload.method, workload.precompute_reference)[0],
    )
    rate = _flops_per_second(workload, flavor, engine, batch_size, checkpointing, flops, cal)
    seconds_per_token = flops.hardware / rate + _memory_bound_seconds_per_token(workload, flavor, engine, cal)
    seconds = _seconds(workload, flavor, engine, rate, flops, seconds_per_token, cal)
    total_seconds = sum(seconds.values())
    billed_minutes = math.ceil(total_seconds / 60)
    # An evaluate job starts, loads and scores like a training job, then uploads only a report.
    evaluate_seconds = (
        total_seconds - seconds["train"] - seconds.get("reference", 0.0) - seconds["export"] - seconds["upload"] + cal.upload_commit_s
    )
    memory = _memory_gb(workload, flavor, engine, batch_size, checkpointing, cal)
    peak = sum(memory.values())
    capacity = flavor.memory_gb

    problems: list[str] = []
    if workload.method == "qlora" and flavor.is_cpu:
        problems.append("qlora needs a GPU: 4-bit bitsandbytes kernels do not run on a CPU")
    if capacity < cal.memory_margin * peak:
        where = "RAM" if flavor.is_cpu else "per GPU"
        problems.append(
            f"needs {peak:.1f} GiB (x{cal.memory_margin:g} margin: "
            f"{cal.memory_margin * peak:.1f} GiB) but {flavor.name} has {capacity:g} GiB {where}"
        )

    tokens_per_second = 1.0 / seconds_per_token
    mfu = None
    if not flavor.is_cpu:
        mfu = tokens_per_second * flops.model / (flavor.gpus * _matmul_tflops(flavor, cal) * 1e12)
    return Estimate(
        flavor=flavor,
        engine=engine,
        dtype=dtype,
        tokens=workload.train_tokens,
        batch_size=batch_size,
        gradient_checkpointing=checkpointing,
        flops_per_token=flops,
        flops=workload.train_tokens * flops.model,
        hardware_flops=workload.train_tokens * flops.hardware,
        tokens_per_second=tokens_per_second,
        mfu=mfu,
        seconds=total_seconds,
        billed_minutes=billed_minutes,
        usd=billed_minutes * flavor.usd_per_hour / 60,
        peak_vram_gb=peak,
        memory_gb=capacity,
        fits=not problems,
        seconds_breakdown=seconds,
        memory_breakdown=memory,
        problems=tuple(problems),
        compile=workload.compile_mode if engine == "unsloth" and not flavor.is_cpu else None,
        eval_seconds=seconds["evaluate"],
        eval_usd=seconds["evaluate"] * flavor.usd_per_hour / 3600,
        evaluate_seconds=evaluate_seconds,
        evaluate_usd=math.ceil(evaluate_seconds / 60) * flavor.usd_per_hour / 60,
        calibration={
            "gpu": gpu_key(flavor),
            "speed": cal.speed_by_gpu.get(gpu_key(flavor), 1.0),
            "memory": 1.0 if flavor.is_cpu else cal.memory_by_gpu.get(gpu_key(flavor), 1.0),
        },
    )


def _batch_cap(workload: Workload, flavor: Flavor, cal: Calibration) -> int:
    """Largest micro-batch worth trying: one optimizer step should not exceed the data (rows of
    real tokens: padding is not data), on a CPU a bigger batch buys nothing but memory, and on
    a GPU past ~32k tokens it gets slower."""
    row = workload.sequences_per_row * workload.real_row_tokens
    per_step = row * max(1, workload.grad_accum) * max(1, flavor.gpus)
    cap = max(1, workload.train_tokens // per_step)
    if flavor.is_cpu:
        return min(cap, cal.cpu_max_auto_batch)
    return min(cap, max(1, cal.gpu_max_micro_batch_tokens // (workload.sequences_per_row * workload.row_tokens)))


def estimate(
    workload: Workload,
    flavor: Flavor,
    calibration: Calibration = DEFAULT_CALIBRATION,
) -> Estimate:
    """Estimate ``workload`` on ``flavor``, resolving ``auto`` settings the way the job will.

    Batch ``None``: the largest size in BATCH_LADDER whose peak fits within memory/margin
    (and whose optimizer step does not exceed the data). Checkpointing ``None``: without it
    when a batch fits, unless checkpointing lets a batch so much larger fit that it is faster
    (e.g. an 8B QLoRA on an H200: batch 1 without vs batch 64 with). When nothing fits, the
    returned estimate is the smallest configuration, with ``fits`` False and the reason.
    """
    cal = calibration
    checkpointing_options = [False, True] if workload.gradient_checkpointing is None else [workload.gradient_checkpointing]
    if workload.batch_size is not None:
        batches: Sequence[int] = [workload.batch_size]
    else:
        cap = _batch_cap(workload, flavor, cal)
        batches = [size for size in BATCH_LADDER if size <= cap] or [1]

    best: Estimate | None = None
    for checkpointing in checkpointing_options:
        fitting = None
        for size in batches:
            candidate = _estimate_with(workload, flavor, size, checkpointing, cal)
            if not candidate.fits:
                break  # memory grows with batch: larger sizes will not fit either
            fitting = candidate
        if fitting is not None and (best is None or fitting.seconds < best.seconds):
            best = fitting
    if best is not None:
        return best
    return _estimate_with(workload, flavor, batches[0], checkpointing_options[-1], cal)


def _candidates(
    workload: Workload,
    allowed: Sequence[str],
    catalog: Mapping[str, Flavor],
    cal: Calibration,
) -> list[Estimate]:
    """Estimates on the allowed flavors that may train: GPUs, or this machine (``local``).

    HF's CPU flavors are never picked for training: a CPU fine-tune costs less per hour but
    runs for days, and the local backend is the place for CPU training.
    """
    estimates = []
    for name in allowed:
        if name not in catalog:
            known = ", ".join(sorted(catalog))
            raise ValueError(f"unknown flavor {name!r}: known flavors are {known}")
        flavor = catalog[name]
        if flavor.is_cpu and flavor.name != "local":
            continue
        estimates.append(estimate(workload, flavor, cal))
    return estimates


def choose_flavor(
    workload: Workload,
    allowed: Sequence[str],
    catalog: Mapping[str, Flavor] = FLAVORS,
    calibration: Calibration = DEFAULT_CALIBRATION,
) -> Estimate:
    """The cheapest allowed flavor that fits (DESIGN: "cheapest flavor that fits the VRAM
    estimate").

    Among flavors whose memory is at least margin x the estimated peak, the lowest billed USD
    wins (then the shortest time, then the name, so the choice is deterministic). Multi-GPU
    flavors are considered only when no single-GPU flavor fits: DDP replicates the model, so
    they add speed, not memory, and their per-GPU-hour price is never lower. Raises
    NoFlavorFits, naming what the run needs, when nothing allowed fits.
    """
    estimates = _candidates(workload, allowed, catalog, calibration)
    fitting = [item for item in estimates if item.fits]
    single = [item for item in fitting if item.flavor.gpus <= 1]
    pool = single or fitting
    if not pool:
        raise NoFlavorFits(_no_fit_message(workload, allowed, estimates, calibration))
    return min(pool, key=lambda item: (item.usd, item.seconds, item.flavor.name))


def smallest_fitting(
    workload: Workload,
    allowed: Sequence[str],
    catalog: Mapping[str, Flavor] = FLAVORS,
    calibration: Calibration = DEFAULT_CALIBRATION,
) -> Estimate | None:
    """The allowed flavor with the least memory per GPU that fits (then fewest GPUs, then
    cheapest): what an error about a forced flavor should suggest. None when nothing fits."""
    fitting = [item for item in _candidates(workload, allowed, catalog, calibration) if item.fits]
    if not fitting:
        return None
    return min(fitting, key=lambda item: (item.memory_gb, item.flavor.gpus, item.flavor.usd_per_hour))


def forced_flavor_error(
    workload: Workload,
    flavor_name: str,
    allowed: Sequence[str],
    catalog: Mapping[str, Flavor] = FLAVORS,
    calibration: Calibration = DEFAULT_CALIBRATION,
) -> str | None:
    """None when the run's forced flavor can train it; else an error that names the fix.

    e.g. "t4-small cannot train this run: needs 15.2 GiB (x1.2 margin: 18.2 GiB) but t4-small
    has 16 GiB per GPU. Smallest allowed flavor that fits: a10g-small (24 GiB per GPU,
    ~$0.05)."
    """
    if flavor_name not in catalog:
        known = ", ".join(sorted(catalog))
        raise ValueError(f"unknown flavor {flavor_name!r}: known flavors are {known}")
    forced = estimate(workload, catalog[flavor_name], calibration)
    if forced.fits:
        return None
    reasons = "; ".join(forced.problems)
    suggestion = smallest_fitting(workload, allowed, catalog, calibration)
    if suggestion is None:
        fix = "No allowed flavor fits: use qlora, a smaller model, a shorter max_seq_length or allow a larger flavor."
    else:
        where = "RAM" if suggestion.flavor.is_cpu else "per GPU"
        fix = f"Smallest allowed flavor that fits: {suggestion.flavor.name} ({suggestion.memory_gb:g} GiB {where}, ~${suggestion.usd:.2f})."
    return f"{flavor_name} cannot train this run: {reasons}. {fix}"


def _no_fit_message(workload: Workload, allowed: Sequence[str], estimates: list[Estimate], cal: Calibration) -> str:
    if not estimates:
        return f"no allowed flavor can train ({', '.join(allowed) or 'none allowed'}): training needs a GPU flavor or the local machine"
    need = min(item.peak_vram_gb for item in estimates)
    listed = ", ".join(f"{item.flavor.name} ({item.memory_gb:g} GiB)" for item in estimates)
    if workload.method == "qlora":
        method = "qlora"
    elif workload.method in PREFERENCE_METHODS:  # LoRA only: what shrinks is the pair of sequences
        method = f"{workload.method} (a pair's two sequences: a shorter max_seq_length needs less)"
    else:
        method = f"{workload.method} (qlora needs less)"
    return (
        f"no allowed flavor fits: the run needs at least {need:.1f} GiB per GPU "
        f"(+{(cal.memory_margin - 1) * 100:.0f}% margin) with {method}; allowed: {listed}"
    )
