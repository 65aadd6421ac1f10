#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotently), checks formatting
# and clippy, builds and runs the Rust tests (and the `runnel` binary), runs each fuzz target for a
# fixed time (FUZZ_SECONDS, default 10), then the compat suite of real Kafka clients
# (tests/compat) against that binary, on COMPAT_WORKERS (default 2) pytest-xdist workers.
#
#   bash scripts/test.sh           everything
#   bash scripts/test.sh --quick   skip the fuzzers and the compat suite
#
# Extra arguments after `--` go to pytest, e.g. `bash scripts/test.sh -- -k kcat -x`.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

quick=0
pytest_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --) shift; pytest_args=("$@"); break ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "test.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

# Each step shows the time since the start, so a slow CI run's log says which step was slow.
step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

# --- Debian packages the tests need --------------------------------------------------------
# PostgreSQL's server for the database connectors' tests (started per test, as an
# unprivileged user, by runnel-testkit's PostgresServer); kcat for the compat suite, and
# Chromium for its web console test (test_console.py).
packages=()
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || packages+=(postgresql)
[[ $quick -eq 1 ]] || command -v kcat >/dev/null 2>&1 || packages+=(kcat)
[[ $quick -eq 1 ]] || [[ -x /usr/bin/chromium ]] || packages+=(chromium)
if [[ ${#packages[@]} -gt 0 ]]; then
    step "installing ${packages[*]}"
    if [[ $(id -u) -eq 0 ]]; then sudo_cmd=(); else sudo_cmd=(sudo -n); fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -q </dev/null
    "${sudo_cmd[@]}" apt-get install -y -q "${packages[@]}" </dev/null
    compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || die "PostgreSQL is still missing after apt-get install"
fi

# --- Tools the compat suite needs ---------------------------------------------------------
if [[ $quick -eq 0 ]]; then
    command -v kcat >/dev/null 2>&1 || die "kcat is missing after apt-get install"
    [[ -x /usr/bin/chromium ]] || die "Chromium is missing after apt-get install"

    python_bin="${PYTHON:-python3}"
    command -v "$python_bin" >/dev/null 2>&1 || die "$python_bin not found (Python >= 3.11 is needed)"
    "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$python_bin is $("$python_bin" --version 2>&1); the compat suite needs Python >= 3.11"

    venv="$repo_root/.venv"
    requirements="$repo_root/tests/compat/requirements.txt"
    stamp="$venv/.requirements.sha256"
    wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [[ ! -x "$venv/bin/python" ]]; then
        step "creating the Python virtual environment in .venv"
        "$python_bin" -m venv "$venv"
    fi
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
        step "installing tests/compat/requirements.txt into .venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" </dev/null
        echo "$wanted" >"$stamp"
    fi
fi

# --- Rust ----------------------------------------------------------------------------------
# A build from nothing (CI's fresh clone) gains nothing from incremental compilation's
# bookkeeping, only its cost.
if [[ "${CI:-}" == "true" ]]; then export CARGO_INCREMENTAL=0; fi
step "cargo fmt --check and cargo clippy -D warnings"
cargo fmt --all -- --check || die "cargo fmt finds unformatted code: run cargo fmt --all"
cargo clippy --workspace --all-targets -- -D warnings

# The test build covers every test and the `runnel` binary (the CLI's integration tests need
# it) before any test runs; a separate `cargo build -p runnel-cli` would build the
# dependencies again with the CLI's own feature set, minutes of CI for nothing.
# cargo-nextest, where installed, runs the tests of all binaries side by side
# (.config/nextest.toml) and stops a hung one; `cargo test` runs one binary after another.
if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace, then the doc tests"
    cargo nextest run --workspace
    cargo test --workspace --doc
else
    step "cargo test --workspace (cargo-nextest is not installed)"
    cargo test --workspace
fi
runnel_bin="${RUNNEL_BIN:-$repo_root/target/debug/runnel}"
[[ -x "$runnel_bin" ]] || die "no runnel binary at $runnel_bin after the build"

# --- Fuzzing: each target a fixed time from the checked-in corpus; any crash or hang fails --
if [[ $quick -eq 1 ]]; then
    echo "test.sh: --quick: fuzzers and compat suite skipped"
    exit 0
fi
step "fuzz targets, ${FUZZ_SECONDS:=10}s each (scripts/fuzz.sh)"
FUZZ_SECONDS="$FUZZ_SECONDS" bash scripts/fuzz.sh

# --- Real clients against the real binary ------------------------------------------------

# Most of these tests wait (on workloads that run for a set time, on faults healing) far more
# than they compute, so COMPAT_WORKERS (default 2) pytest-xdist workers run them side by side,
# each with its own share of ports (conftest.free_port); work stealing spreads the long
# cluster tests over the workers. `-- -n 0` runs them one at a time.
workers="${COMPAT_WORKERS:-2}"
step "compat suite: .venv/bin/python -m pytest tests/compat -n $workers"
export RUNNEL_BIN="$runnel_bin"
# pytest exits non-zero on any failure, error, or when it collected no test at all (5).
"$repo_root/.venv/bin/python" -m pytest tests/compat -v -n "$workers" --dist worksteal \
    --timeout=120 --durations=25 "${pytest_args[@]}" </dev/null
