#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with coverage instrumentation (stable Rust: the
# sanitizer-coverage pass and libFuzzer need no nightly flags) and runs each for a fixed time,
# starting from the checked-in corpus. Any crash, panic, timeout (a hang) or out-of-memory
# fails the script and leaves the input under target/fuzz/artifacts/.
#
#   bash scripts/fuzz.sh                 every target, FUZZ_SECONDS (default 30) each
#   bash scripts/fuzz.sh batch_validation
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh storage_recovery
#
# New inputs are kept in target/fuzz/corpus/, not in the repository; copy the interesting ones
# to fuzz/corpus/<target>/ by hand.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

seconds="${FUZZ_SECONDS:-30}"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(frame_decoding request_parsing batch_validation storage_recovery)
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
work="$repo_root/target/fuzz"
export CARGO_TARGET_DIR="$work/build"
# --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"

printf '\n==> building fuzz targets (%s)\n' "${targets[*]}"
cargo build --release --locked --manifest-path fuzz/Cargo.toml --target "$host" \
    $(printf -- '--bin %s ' "${targets[@]}")

mkdir -p "$work/artifacts"
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    mkdir -p "$corpus"
    printf '\n==> fuzzing %s for %ss\n' "$target" "$seconds"
    # The first directory receives new inputs; the checked-in seeds are read only.
    "$CARGO_TARGET_DIR/$host/release/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/$target-" \
        "$corpus" "fuzz/corpus/$target" 2>&1 | grep -v '^#[0-9]' || {
        echo "fuzz.sh: $target failed; the input is in $work/artifacts/" >&2
        exit 1
    }
done
