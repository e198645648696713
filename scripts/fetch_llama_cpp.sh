#!/usr/bin/env bash
# Lays out .llama.cpp/: what a GGUF export (output.save: gguf:<quant>) needs from llama.cpp, for a
# machine that has no llama.cpp (the Unsloth image ships one at $UNSLOTH_LLAMA_CPP_PATH; a local
# GPU box or CI does not) and perhaps no network:
#
#   .llama.cpp/convert_hf_to_gguf.py   the converter (HF folder -> f16 / bf16 / q8_0 GGUF)
#   .llama.cpp/convert_lora_to_gguf.py Unsloth checks it is there
#   .llama.cpp/conversion/             the converter's model classes (split out of it upstream)
#   .llama.cpp/gguf-py/                the gguf package the converter puts on its path
#   .llama.cpp/llama-quantize          a static CPU build, for the k-quants (q4_k_m, ...)
#
# The source comes from PyPI: the llama-cpp-python sdist vendors llama.cpp, so `pip download`
# is the only network step. Then point a job at it:
#   TUNEFORM_LLAMA_CPP=$PWD/.llama.cpp tuneform apply runs/x.yaml
# (or UNSLOTH_LLAMA_CPP_PATH, Unsloth's own name, which tuneform also reads).
#
# Usage: scripts/fetch_llama_cpp.sh [DEST]   (default .llama.cpp; JOBS=2 parallel compile jobs)
# Building llama-quantize takes about 10-20 minutes on 2 cores; set SKIP_BUILD=1 for the
# converter alone (enough for gguf:f16, gguf:bf16 and gguf:q8_0).
set -euo pipefail

DEST="${1:-.llama.cpp}"
JOBS="${JOBS:-2}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 -m pip download -q --no-binary :all: --no-deps -d "$WORK" "llama-cpp-python==$VERSION"
tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"
[ -f "$SRC/convert_hf_to_gguf.py" ] || { echo "error: $SRC has no convert_hf_to_gguf.py" >&2; exit 1; }

mkdir -p "$DEST"
cp "$SRC/convert_hf_to_gguf.py" "$SRC/convert_lora_to_gguf.py" "$DEST/"
rm -rf "$DEST/gguf-py" "$DEST/conversion"
cp -r "$SRC/gguf-py" "$DEST/gguf-py"
[ -d "$SRC/conversion" ] && cp -r "$SRC/conversion" "$DEST/conversion"
rm -rf "$DEST/gguf-py/tests" "$DEST/gguf-py/examples"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # A portable CPU build: no -march=native (the folder travels to another machine), AVX2/FMA/F16C
    # (every x86-64 server of the last decade), static so it needs no libllama/libggml beside it.
    cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
        -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DCMAKE_EXE_LINKER_FLAGS="-static" >"$WORK/cmake.log" 2>&1 || { tail -30 "$WORK/cmake.log" >&2; exit 1; }
    cmake --build "$WORK/build" --target llama-quantize -j "$JOBS" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; exit 1; }
    cp "$WORK/build/bin/llama-quantize" "$DEST/llama-quantize"
    strip "$DEST/llama-quantize" || true
    "$DEST/llama-quantize" --help >/dev/null 2>&1 || [ $? -eq 1 ]  # it prints usage and exits 1
fi
echo "llama.cpp from llama-cpp-python $VERSION in $DEST ($(du -sh "$DEST" | cut -f1))"
