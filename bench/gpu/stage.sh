#!/usr/bin/env bash
# Prepares, on this (CPU) machine, what bench/gpu/run.sh needs on a lent CUDA machine that can
# reach no network and has no Debian -dev packages: a bundle under .gpu/ (ignored by git, carried
# by the device tool with `carry: [".gpu"]`):
#   .gpu/openrl         the CLI linked against libtorch_cuda (OPENRL_WITH_CUDA=ON; the pinned torch
#                       wheel is the CUDA 13 build), stripped
#   .gpu/lib.tar.xz     the shared libraries it needs beyond glibc and torch (protobuf, libarchive,
#                       OpenSSL, SQLite, spdlog, ...), copied from this machine
#   .gpu/whl/           cp312 wheels of the tinker SDK and the dependencies that machine's image lacks
#   .gpu/smollm2/       SmolLM2-135M-Instruct's config and tokenizer files (no weights: the GGUF is
#                       larger than the device tool carries; run.sh gives the same shape random weights)
# Afterwards the build directory is relinked without libtorch_cuda again (the tests' default).
#
# Usage: bench/gpu/stage.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD="${1:-build}"
PY="$PWD/.venv/bin/python"
STAGE=.gpu
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.gpu/' >>.git/info/exclude; }
rm -rf "$STAGE" && mkdir -p "$STAGE/lib" "$STAGE/whl" "$STAGE/smollm2"

echo "== stage: relink $BUILD/openrl with libtorch_cuda"
cmake -S . -B "$BUILD" -DOPENRL_WITH_CUDA=ON >/dev/null
cmake --build "$BUILD" --target openrl
BIN="$BUILD/src/openrl/cli/openrl"
ldd "$BIN" | grep -q libtorch_cuda || { echo "stage: libtorch_cuda not linked" >&2; exit 1; }
strip -o "$STAGE/openrl" "$BIN"
# Libraries outside glibc, the C++ runtime and the torch wheel (which the CUDA machine has).
ldd "$BIN" | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libutil.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
    *) case "$lib" in */site-packages/*) ;; *) cp -L "$lib" "$STAGE/lib/" ;; esac ;;
  esac
done
tar -C "$STAGE" -cJf "$STAGE/lib.tar.xz" lib && rm -rf "$STAGE/lib"  # ICU's data alone is 31 MB
cmake -S . -B "$BUILD" -DOPENRL_WITH_CUDA=OFF >/dev/null
cmake --build "$BUILD" --target openrl >/dev/null

echo "== stage: wheels (versions from requirements.lock)"
pins=$(grep -iE '^(tinker|distro|h2|hpack|hyperframe|orjson|pydantic|pydantic_core|annotated-types|typing-inspection|typing_extensions|pyqwest|sniffio|zstandard|opentelemetry-api)==' requirements.lock)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$STAGE/whl" $pins

echo "== stage: SmolLM2-135M-Instruct config and tokenizer"
SRC=$(mktemp -d)
"$BUILD/src/openrl/cli/openrl" models import var/models/SmolLM2-135M-Instruct.Q4_1.gguf --out "$SRC/m" >/dev/null
for f in config.json generation_config.json tokenizer.json tokenizer_config.json chat_template.jinja; do
  [ -f "$SRC/m/$f" ] && cp "$SRC/m/$f" "$STAGE/smollm2/"
done
rm -rf "$SRC"
du -sh "$STAGE"/* "$STAGE"
