#!/usr/bin/env bash
# Fetch the wheels a GPU machine without internet lacks, into .whl/ (gitignored), for
# CPython 3.12 on manylinux x86_64: what bench/gpu.py needs to train with tuneform there.
#
#   scripts/fetch_gpu_wheels.sh            # fetch, trim unsloth, check the size
#   PYTHON=.venv/bin/python scripts/fetch_gpu_wheels.sh
#
# What and why (docs/calibration.md and shared/reference/unsloth-on-gpu.md say more):
# - unsloth + unsloth_zoo: the `unsloth` engine. The unsloth wheel is ~29 MB, mostly its bundled
#   studio UI; a copy without studio/ and unsloth_cli/ (~2 MB) imports and trains, and keeps the
#   whole carry (wheels + working tree) under the device tool's 64 MiB.
# - bitsandbytes: unsloth refuses to load a model without it (and adamw_8bit, qlora need it).
# - trl 1.14.x (tuneform's pin; 1.15+ fuses the LM head through a Triton-only kernel), datasets
#   4.8.x with its dill and multiprocess: the GPU image has none of them.
# - pydantic, pydantic-core, annotated-types, typing-inspection, typing_extensions: tuneform's
#   base install needs pydantic and the image lacks it. click, PyYAML, rich, httpx, tokenizers,
#   huggingface_hub, transformers, peft, accelerate, torch, triton are in the image (KINDS.md).
#
# On the device, install them first thing in the command:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEST=${DEST:-.whl}
LIMIT_MIB=${LIMIT_MIB:-64}

# One version of each: two versions of a package in .whl/ stop the whole install there.
PACKAGES=(
    "unsloth==2026.10.9"
    "unsloth_zoo==2026.10.9"
    "bitsandbytes==0.50.2"
    "trl==1.14.2"
    "datasets==4.8.5"
    "dill==0.4.1"
    "multiprocess==0.70.19"
    "pydantic==2.14.4"
    "pydantic-core==2.50.5"
    "annotated-types==0.8.0"
    "typing-inspection==0.4.5"
    "typing-extensions>=4.16"
)

mkdir -p "$DEST"
# pip matches manylinux_2_N exactly: list the Ns the wheels above are built for.
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$DEST" "${PACKAGES[@]}"

# Trim unsloth: drop studio/ and unsloth_cli/ and rewrite RECORD so pip still accepts the wheel.
"$PYTHON" - "$DEST" <<'EOF'
import base64, csv, hashlib, io, sys, zipfile
from pathlib import Path

dest = Path(sys.argv[1])
for wheel in sorted(dest.glob("unsloth-*.whl")):
    with zipfile.ZipFile(wheel) as src:
        names = src.namelist()
        drop = [n for n in names if n.startswith(("studio/", "unsloth_cli/", "unsloth/studio/"))]
        if not drop:
            print(f"{wheel.name}: already trimmed ({wheel.stat().st_size / 2**20:.1f} MiB)")
            continue
        keep = [n for n in names if n not in drop]
        record = next(n for n in keep if n.endswith(".dist-info/RECORD"))
        out = io.BytesIO()
        rows = []
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for name in keep:
                if name == record:
                    continue
                data = src.read(name)
                dst.writestr(src.getinfo(name), data)
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                rows.append([name, f"sha256={digest}", str(len(data))])
            rows.append([record, "", ""])
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(rows)
            dst.writestr(record, text.getvalue())
    before = wheel.stat().st_size
    wheel.write_bytes(out.getvalue())
    print(f"{wheel.name}: removed {len(drop)} files (studio/, unsloth_cli/): {before / 2**20:.1f} -> {wheel.stat().st_size / 2**20:.1f} MiB")
EOF

# Exactly one wheel per package.
dupes=$(ls "$DEST"/*.whl | xargs -n1 basename | sed -E 's/-[0-9].*//' | tr 'A-Z-' 'a-z_' | sort | uniq -d)
if [ -n "$dupes" ]; then
    echo "error: several versions of: $dupes in $DEST: delete the old ones" >&2
    exit 1
fi

# The device tool carries the working tree and .whl/ together: at most 64 MiB.
wheels=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$((wheels + tree))
printf 'wheels %.1f MiB + working tree %.1f MiB = %.1f MiB (limit %d MiB)\n' \
    "$(echo "$wheels / 1048576" | bc -l)" "$(echo "$tree / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)" "$LIMIT_MIB"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "error: over the carry limit: drop a wheel or trim the tree" >&2
    exit 1
fi
