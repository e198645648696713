"""Exports for serving: what `output.save` asks for, written into the version's model folder.

The layout (README: Exports) keeps what every consumer read before lists existed at the root:

    <model>/                   the adapter (lora/qlora) or, when no adapter is saved, the merged
                               weights; the evals score this one, `revert` restores it
    <model>/merged/            16-bit merged weights, when saved beside the adapter
    <model>/gguf/model-<Q>.gguf one llama.cpp file per quantization (Q4_K_M, Q8_0, ...)

GGUF files come from llama.cpp's own converter, as Unsloth drives it. With Unsloth (a GPU job) its
`save_pretrained_gguf` runs the llama.cpp at `UNSLOTH_LLAMA_CPP_PATH` (the Unsloth image ships one);
without it the job runs that folder's `convert_hf_to_gguf.py` on the merged weights (f16, bf16 and
q8_0 directly) and `llama-quantize` on an f16 file for the k-quants. `TUNEFORM_LLAMA_CPP` names
another folder (scripts/fetch_llama_cpp.sh lays one out). `check_exports` runs before anything is
loaded, so a missing converter costs no GPU time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneform.core.errors import TuneformError
from tuneform.runfile.spec import GGUF_CONVERTED, GGUF_FOLDER, GGUF_QUANTIZED, MERGED_FOLDER, OutputSpec, RunSpec, gguf_file

LLAMA_CPP_ENV = "TUNEFORM_LLAMA_CPP"
UNSLOTH_LLAMA_CPP_ENV = "UNSLOTH_LLAMA_CPP_PATH"
_FIX = (
    f"run scripts/fetch_llama_cpp.sh and set {LLAMA_CPP_ENV}=$PWD/.llama.cpp (the Unsloth image sets "
    f"{UNSLOTH_LLAMA_CPP_ENV} itself), or remove the gguf entries from output.save"
)


class ExportError(TuneformError):
    """An export cannot be made: the converter is missing or failed."""


@dataclass(frozen=True)
class LlamaCpp:
    """A llama.cpp folder as Unsloth's check_llama_cpp reads it: the converter script (with its
    conversion/ package and gguf-py/ beside it) and the llama-quantize binary at the top."""

    folder: Path
    setting: str  # the environment variable that named it, for messages

    @property
    def converter(self) -> Path:
        return self.folder / "convert_hf_to_gguf.py"

    @property
    def quantize(self) -> Path:
        return self.folder / "llama-quantize"


def find_llama_cpp(quants: tuple[str, ...], environ: Mapping[str, str] = os.environ) -> LlamaCpp:
    """The llama.cpp that makes `quants`; ExportError naming the setting and the fix when it is
    missing or lacks a part they need (llama-quantize only for the k-quants)."""
    asked = ", ".join(f"gguf:{q}" for q in quants)
    setting = next((name for name in (LLAMA_CPP_ENV, UNSLOTH_LLAMA_CPP_ENV) if environ.get(name)), None)
    if setting is None:
        raise ExportError(f"output.save asks for {asked} and no llama.cpp is set ({LLAMA_CPP_ENV} or {UNSLOTH_LLAMA_CPP_ENV})", fix=_FIX)
    found = LlamaCpp(Path(environ[setting]).expanduser(), setting)
    where = f"{setting}={found.folder}"
    if not found.converter.is_file():
        raise ExportError(f"output.save asks for {asked} and {where} has no convert_hf_to_gguf.py", fix=_FIX)
    if not (found.folder / "gguf-py" / "gguf" / "__init__.py").is_file() and importlib.util.find_spec("gguf") is None:
        raise ExportError(f"output.save asks for {asked} and {where} has no gguf-py/ (nor is the gguf package installed)", fix=_FIX)
    needs_quantize = [q for q in quants if q in GGUF_QUANTIZED]
    if needs_quantize and not os.access(found.quantize, os.X_OK):
        raise ExportError(
            f"output.save asks for {', '.join(f'gguf:{q}' for q in needs_quantize)}, which llama-quantize makes, "
            f"and {where} has no executable llama-quantize",
            fix=f"{_FIX}; gguf:f16, gguf:bf16 and gguf:q8_0 need only the converter",
        )
    return found


def check_exports(spec: RunSpec, environ: Mapping[str, str] = os.environ) -> None:
    """Refuse, before any data or model is loaded, exports this machine cannot make."""
    quants = spec.output.gguf
    if quants:
        llama = find_llama_cpp(quants, environ)
        # Unsloth reads its llama.cpp folder once, when it is imported: point it at the one found
        # (TUNEFORM_LLAMA_CPP wins over the image's), so both engines convert with the same llama.cpp.
        os.environ[UNSLOTH_LLAMA_CPP_ENV] = str(llama.folder)


def write_exports(model: Any, tokenizer: Any, spec: RunSpec, engine: str, out_dir: Path) -> None:
    """Write every export of `spec.output.save` under `out_dir` (the layout above).

    `model` is the trained model: a PEFT (or Unsloth) wrapper for LoRA, the model itself for a
    full fine-tune. The adapter is written before anything merges, since PEFT's merge folds the
    adapter into the base layers in place.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    output = spec.output
    lora = spec.method.type != "full"
    if output.root == "adapter":
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
    merged_dir = out_dir / MERGED_FOLDER if output.merged_folder else out_dir if output.root == "merged" else None
    with tempfile.TemporaryDirectory(prefix="tuneform-merge-", dir=out_dir.parent) as scratch:
        if output.gguf and engine == "unsloth" and lora:
            # Unsloth merges (dequantising a 4-bit base) and converts in one call.
            _unsloth_gguf(model, tokenizer, output.gguf, Path(scratch), out_dir / GGUF_FOLDER)
            if merged_dir is not None:
                _save_merged(model, tokenizer, engine, lora, merged_dir)
            return
        if merged_dir is None and output.gguf:
            merged_dir = Path(scratch) / "merged"  # the converter reads merged weights from disk
        if merged_dir is not None:
            _save_merged(model, tokenizer, engine, lora, merged_dir)
        if output.gguf:
            assert merged_dir is not None
            convert_to_gguf(merged_dir, output.gguf, out_dir / GGUF_FOLDER, find_llama_cpp(output.gguf))


def _save_merged(model: Any, tokenizer: Any, engine: str, lora: bool, folder: Path) -> None:
    """16-bit weights with the adapter folded in (or the fully fine-tuned model), with the tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    if lora and engine == "unsloth":
        # Unsloth dequantises a 4-bit base and writes 16-bit merged weights; the model stays a LoRA one.
        model.save_pretrained_merged(str(folder), tokenizer, save_method="merged_16bit")
        return
    if lora:
        model = model.merge_and_unload()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


def convert_to_gguf(merged_dir: Path, quants: tuple[str, ...], dest: Path, llama: LlamaCpp) -> list[Path]:
    """llama.cpp's converter on a merged folder: f16, bf16 and q8_0 straight from it; each
    k-quant by llama-quantize from one f16 file (the path Unsloth takes). Returns the files."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="tuneform-gguf-", dir=dest.parent) as scratch:
        f16 = dest / gguf_file("f16") if "f16" in quants else Path(scratch) / "model-F16.gguf"
        for quant in quants:
            if quant in GGUF_CONVERTED:
                written.append(_convert(llama, merged_dir, quant, dest / gguf_file(quant)))
        for quant in quants:
            if quant in GGUF_QUANTIZED:
                if not f16.is_file():
                    _convert(llama, merged_dir, "f16", f16)
                target = dest / gguf_file(quant)
                _run([str(llama.quantize), str(f16), str(target), quant.upper()], f"llama-quantize to {quant}")
                written.append(target)
    return written


def _convert(llama: LlamaCpp, merged_dir: Path, outtype: str, target: Path) -> Path:
    command = [sys.executable, str(llama.converter), str(merged_dir), "--outtype", outtype, "--outfile", str(target)]
    _run(command, f"convert_hf_to_gguf.py to {outtype}")
    return target


def _run(command: list[str], what: str) -> None:
    """A converter step; its last lines of output in the error when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ExportError(f"{what} failed (exit {done.returncode}):\n{tail}", fix="the converter's message above says why")


def _unsloth_gguf(model: Any, tokenizer: Any, quants: tuple[str, ...], scratch: Path, dest: Path) -> None:
    """Unsloth's save_pretrained_gguf into `scratch`, then each file renamed into `dest`. Unsloth
    names them `<name>.<QUANT>.gguf` in a `<dir>_gguf` folder beside the merge (or in it, by
    version): both are searched."""
    target = scratch / "model"
    model.save_pretrained_gguf(str(target), tokenizer, quantization_method=list(quants))
    dest.mkdir(parents=True, exist_ok=True)
    made = [*scratch.rglob("*.gguf")]
    for quant in quants:
        found = [p for p in made if p.name.upper().endswith(f".{quant.upper()}.GGUF")]
        if not found:
            raise ExportError(
                f"Unsloth's save_pretrained_gguf made no {quant} file (found: {', '.join(p.name for p in made) or 'none'})",
                fix=f"check the job log above; {LLAMA_CPP_ENV} can point at another llama.cpp (scripts/fetch_llama_cpp.sh)",
            )
        shutil.move(str(found[0]), dest / gguf_file(quant))


def export_sizes(output: OutputSpec, model_dir: Path) -> dict[str, int]:
    """Bytes on disk of each export in a written model folder; the root export's are the files
    outside merged/ and gguf/ (its model card, written later, left out)."""
    sizes = {}
    for name, rel in output.paths().items():
        if rel:
            path = model_dir / rel
            sizes[name] = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        else:
            exported = {MERGED_FOLDER, GGUF_FOLDER}
            files = (p for p in model_dir.rglob("*") if p.is_file() and p.relative_to(model_dir).parts[0] not in exported)
            sizes[name] = sum(p.stat().st_size for p in files if p.name != "README.md")
    return sizes
