#!/usr/bin/env bash
# End-to-end throughput of a release `runnel server`, against the loopback limit measured by
# iperf3 in the same run (see BENCHMARKS.md).
#
#   bash scripts/bench.sh [--records N] [--rounds R] [--clients-only] [--no-build]
#       (defaults: 300000 records of 1024 bytes, 3 rounds)
#
# Steps: build `target/release/runnel`; iperf3 on 127.0.0.1 for 5 s (receiver bits/s); start
# the broker on a free loopback port with a temp data dir; confluent-kafka (scripts/
# bench_clients.py, from .venv) produces N records to a 6-partition topic with acks=1, again
# with acks=all, then fetches the acks=1 topic from the beginning; kcat produces a file of N
# 1 KiB lines and consumes it back. Prints a table (with each figure's ratio to iperf3) and a
# line `BENCH_JSON {...}`.
#
# Then "Rust client vs librdkafka", against the same broker: R rounds, each running in turn
# `runnel bench produce` (acks=1) and confluent-kafka produce (in the other order in even
# rounds), confluent-kafka produce with a delivery report per record (for latency), the same
# three with acks=all, then `runnel bench consume` and a confluent-kafka consume of the
# round's acks=1 topic written by runnel (swapped in even rounds); so noise falls on both
# clients alike. Matched settings: N records of 1024 B, 6 partitions, null
# keys (sticky partitioning on both sides), linger 5 ms, batch size 1000000, 32 MiB producer
# buffer. Prints per-round figures, medians and ratios ours/librdkafka, then `CLIENTS_JSON {...}`.
# --clients-only skips iperf3, the first confluent-kafka runs and kcat; --no-build uses the
# target/release/runnel already there (when others are editing the tree).
# The broker is stopped on exit, whatever happens.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

records=300000
rounds=3
clients_only=0
build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --records) records="${2:?--records needs a number}"; shift 2 ;;
        --records=*) records="${1#--records=}"; shift ;;
        --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
        --rounds=*) rounds="${1#--rounds=}"; shift ;;
        --clients-only) clients_only=1; shift ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ "$records" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --records must be a positive integer" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --rounds must be a positive integer" >&2; exit 2; }
record_bytes=1024
partitions=6

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

# --- Tools ---------------------------------------------------------------------------------
missing=()
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
if [[ ${#missing[@]} -gt 0 ]]; then
    step "installing ${missing[*]}"
    if [[ $(id -u) -eq 0 ]]; then sudo_cmd=(); else sudo_cmd=(sudo -n); fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -q </dev/null
    "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}" </dev/null
fi
venv_python="$repo_root/.venv/bin/python"
if ! "$venv_python" -c 'import confluent_kafka' >/dev/null 2>&1; then
    step "creating .venv with tests/compat/requirements.txt"
    [[ -x "$venv_python" ]] || python3 -m venv "$repo_root/.venv"
    "$repo_root/.venv/bin/pip" install --quiet --disable-pip-version-check \
        -r tests/compat/requirements.txt </dev/null
fi

if [[ $build -eq 1 ]]; then
    step "cargo build --release -p runnel-cli"
    cargo build --release -p runnel-cli
fi
runnel_bin="$repo_root/target/release/runnel"
[[ -x "$runnel_bin" ]] || die "no binary at $runnel_bin"

# --- Temp dir, cleanup -----------------------------------------------------------------------
work="$(mktemp -d -t runnel-bench.XXXXXX)"
broker_pid=""
iperf_pid=""
cleanup() {
    local status=$?
    if [[ -n "$iperf_pid" ]] && kill -0 "$iperf_pid" 2>/dev/null; then kill "$iperf_pid" 2>/dev/null || true; fi
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f "$work/broker.log" ]]; then
        echo "bench.sh: failed (status $status); broker log tail:" >&2
        tail -n 30 "$work/broker.log" >&2 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # port, seconds
    local deadline=$((SECONDS + $2))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [[ $SECONDS -lt $deadline ]] || return 1
        sleep 0.05
    done
}
now() { date +%s.%N; }
cpu_ticks() { # utime + stime of a pid, in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
clk_tck="$(getconf CLK_TCK)"

# --- (a) Loopback baseline -------------------------------------------------------------------
if [[ $clients_only -eq 0 ]]; then
step "iperf3 loopback, 5 s"
iperf_port="$(free_port)"
iperf3 -s -1 -B 127.0.0.1 -p "$iperf_port" >"$work/iperf3-server.log" 2>&1 &
iperf_pid=$!
# Not wait_port: a probe connection would be the one test `-s -1` serves.
listening() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q LISTEN; }
for _ in $(seq 200); do listening "$iperf_port" && break; sleep 0.05; done
listening "$iperf_port" || die "iperf3 server did not start"
iperf3 -c 127.0.0.1 -p "$iperf_port" -t 5 -J >"$work/iperf3.json"
wait "$iperf_pid" 2>/dev/null || true
iperf_pid=""
iperf_bps="$(python3 -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]))' "$work/iperf3.json")"
echo "iperf3 receiver: $iperf_bps bits/s" >&2
fi

# --- The broker -------------------------------------------------------------------------------
port="$(free_port)"
bootstrap="127.0.0.1:$port"
step "starting $runnel_bin server on $bootstrap"
mkdir -p "$work/data"
# The broker reads RUNNEL_* variables as flags: keep the caller's out of it.
unset_env=()
while read -r name; do unset_env+=(-u "$name"); done < <(compgen -e | grep '^RUNNEL_' || true)
env "${unset_env[@]}" NO_COLOR=1 "$runnel_bin" server --listen "$bootstrap" \
    --advertised-listener "$bootstrap" --data-dir "$work/data" --node-id 0 \
    >"$work/broker.log" 2>&1 </dev/null &
broker_pid=$!
wait_port "$port" 20 || die "broker did not listen on $bootstrap"

# --- (b), (c) confluent-kafka ---------------------------------------------------------------
if [[ $clients_only -eq 0 ]]; then
step "confluent-kafka: produce $records x ${record_bytes} B (acks=1, acks=all), then fetch"
"$venv_python" scripts/bench_clients.py run --bootstrap "$bootstrap" --records "$records" \
    --size "$record_bytes" --partitions "$partitions" --broker-pid "$broker_pid" >"$work/clients.json"

# --- (d) kcat ---------------------------------------------------------------------------------
step "kcat: produce and consume $records lines of ${record_bytes} B"
python3 - "$work/lines.txt" "$records" "$record_bytes" <<'EOF'
import random, string, sys
path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
alphabet = (string.ascii_letters + string.digits).encode()
block = bytes(rng.choice(alphabet) for _ in range(size * 64))
with open(path, "wb") as out:
    for i in range(count):
        start = (i * 131) % (len(block) - size)
        out.write(block[start : start + size] + b"\n")
EOF
kcat_topic="bench-kcat-$RANDOM$RANDOM"
"$venv_python" scripts/bench_clients.py create-topic --bootstrap "$bootstrap" --topic "$kcat_topic" \
    --partitions "$partitions"
kcat_opts=(-b "$bootstrap" -t "$kcat_topic" -q)
TIMEFORMAT='%R %U %S'

b0="$(cpu_ticks "$broker_pid")"
{ time kcat -P "${kcat_opts[@]}" -X acks=1 -X linger.ms=5 -X batch.size=1000000 \
    <"$work/lines.txt" 2>>"$work/kcat.err"; } 2>"$work/kcat-produce.time"
b1="$(cpu_ticks "$broker_pid")"
{ time kcat -C "${kcat_opts[@]}" -o beginning -e -f '%o\n' 2>>"$work/kcat.err" \
    | wc -l >"$work/kcat-consumed"; } 2>"$work/kcat-consume.time"
b2="$(cpu_ticks "$broker_pid")"
consumed="$(tr -d ' ' <"$work/kcat-consumed")"
[[ "$consumed" == "$records" ]] || die "kcat consumed $consumed records, expected $records ($(cat "$work/kcat.err"))"

# --- Summary ----------------------------------------------------------------------------------
step "summary"
python3 - "$work" "$iperf_bps" "$records" "$record_bytes" "$b0" "$b1" "$b2" "$clk_tck" <<'EOF'
import json, sys
work, iperf_bps, records, size = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
b0, b1, b2, clk_tck = (float(x) for x in sys.argv[5:9])
results = json.load(open(f"{work}/clients.json"))

def kcat_result(name, broker_ticks):
    real, user, sys_ = (float(x) for x in open(f"{work}/kcat-{name}.time").read().split())
    return {
        "records": records, "record_bytes": size, "seconds": round(real, 3),
        "records_per_s": round(records / real), "mb_per_s": round(records * size / 1e6 / real, 2),
        "bits_per_s": round(records * size * 8 / real),
        "client_cpu_pct": round(100 * (user + sys_) / real),
        "broker_cpu_pct": round(100 * broker_ticks / clk_tck / real),
    }

results["kcat_produce_acks_1"] = kcat_result("produce", b1 - b0)
results["kcat_consume"] = kcat_result("consume", b2 - b1)
for value in results.values():
    value["ratio_to_loopback"] = round(value["bits_per_s"] / iperf_bps, 4)

print(f"iperf3 loopback (receiver): {iperf_bps / 1e9:.2f} Gbit/s = {iperf_bps / 8e6:.0f} MB/s")
print(f"{records} records x {size} B values, {records * size / 1e6:.0f} MB per run; MB = 10^6 B of values")
header = f"{'run':<22}{'MB/s':>9}{'records/s':>12}{'seconds':>9}{'vs iperf3':>11}{'client CPU':>12}{'broker CPU':>12}"
print(header)
print("-" * len(header))
for name, r in results.items():
    print(f"{name:<22}{r['mb_per_s']:>9.1f}{r['records_per_s']:>12}{r['seconds']:>9.2f}"
          f"{r['ratio_to_loopback']:>10.1%} {r['client_cpu_pct']:>10}% {r['broker_cpu_pct']:>10}%")
print("(CPU: % of one core over the run; 200% = both cores)")
summary = {"iperf3_loopback_bits_per_s": round(iperf_bps), **results}
print("BENCH_JSON " + json.dumps(summary))
EOF
fi # clients_only

# --- (e) Rust client vs librdkafka, interleaved ---------------------------------------------
# CPU, as % of one core: for `runnel bench`, bash `time` (user + sys) of the runnel process and
# the broker's /proc ticks over the same span, divided by the process's wall time (its set-up
# is a few ms: the topics are created beforehand, since creating one from `runnel bench` waits
# ~2.5 s first, see BENCHMARKS.md); for confluent-kafka, the figures bench_clients.py measures
# over its timed part (getrusage of the Python process, /proc of the broker), which leave out
# the interpreter's start-up.
step "Rust client vs librdkafka: $rounds rounds of $records x ${record_bytes} B"
mkdir -p "$work/clients"
TIMEFORMAT='%R %U %S'
runnel_cli=(env "${unset_env[@]}" NO_COLOR=1 "$runnel_bin")
# One run: name, then the command (its stdout's last line is a JSON object). Writes
# $work/clients/NAME.{json,time,broker}.
measure() {
    local name="$1"; shift
    local b0 b1
    b0="$(cpu_ticks "$broker_pid")"
    { time "$@" >"$work/clients/$name.out" 2>>"$work/clients/$name.err" </dev/null; } \
        2>"$work/clients/$name.time" \
        || die "$name failed: $(tail -n 5 "$work/clients/$name.err")"
    b1="$(cpu_ticks "$broker_pid")"
    tail -n 1 "$work/clients/$name.out" >"$work/clients/$name.json"
    echo "$((b1 - b0))" >"$work/clients/$name.broker"
    printf '  %-26s %s\n' "$name" "$(cut -c1-160 "$work/clients/$name.json")" >&2
}
ours_produce() { # acks topic
    "${runnel_cli[@]}" bench produce --bootstrap "$bootstrap" --topic "$2" --records "$records" \
        --record-size "$record_bytes" --partitions "$partitions" --acks "$1" --linger-ms 5 \
        --batch-size 1000000 --format json
}
lib_produce() { # acks topic [--latency]
    "$venv_python" scripts/bench_clients.py produce --bootstrap "$bootstrap" --topic "$2" \
        --records "$records" --size "$record_bytes" --partitions "$partitions" --acks "$1" \
        --broker-pid "$broker_pid" "${@:3}"
}
for round in $(seq "$rounds"); do
    step "round $round of $rounds"
    for topic in ours lib libdr; do
        for acks in 1 all; do
            "${runnel_cli[@]}" topic create "rc-r$round-$topic-acks$acks" --partitions "$partitions" \
                --bootstrap "$bootstrap" >/dev/null </dev/null || die "could not create rc-r$round-$topic-acks$acks"
        done
    done
    # Later runs in a round find more data written before them (see BENCHMARKS.md): odd rounds
    # run ours first, even rounds librdkafka first; lib+DR always runs last.
    if (( round % 2 )); then order=(ours lib); else order=(lib ours); fi
    for acks in 1 all; do
        for side in "${order[@]}"; do
            case "$side" in
                ours) measure "r${round}-ours-produce-acks-$acks" ours_produce "$acks" "rc-r$round-ours-acks$acks" ;;
                lib) measure "r${round}-lib-produce-acks-$acks" lib_produce "$acks" "rc-r$round-lib-acks$acks" ;;
            esac
        done
        measure "r${round}-libdr-produce-acks-$acks" lib_produce "$acks" "rc-r$round-libdr-acks$acks" --latency
    done
    for side in "${order[@]}"; do
        case "$side" in
            ours) measure "r${round}-ours-consume" "${runnel_cli[@]}" bench consume --bootstrap "$bootstrap" \
                --topic "rc-r$round-ours-acks1" --records "$records" --format json ;;
            lib) measure "r${round}-lib-consume" "$venv_python" scripts/bench_clients.py consume \
                --bootstrap "$bootstrap" --topic "rc-r$round-ours-acks1" --records "$records" \
                --size "$record_bytes" --partitions "$partitions" --broker-pid "$broker_pid" ;;
        esac
    done
    # Drop the round's topics, so the next round does not start with 1.8 GB more on disk.
    for topic in ours lib libdr; do
        for acks in 1 all; do
            "${runnel_cli[@]}" topic delete "rc-r$round-$topic-acks$acks" --bootstrap "$bootstrap" \
                >/dev/null 2>>"$work/clients/delete.err" </dev/null || true
        done
    done
done

step "Rust client vs librdkafka: summary"
python3 - "$work/clients" "$rounds" "$records" "$record_bytes" "$clk_tck" <<'EOF'
import json, statistics, sys
folder, rounds, records, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
clk_tck = float(sys.argv[5])

def load(name):
    data = json.loads(open(f"{folder}/{name}.json").read())
    real, user, sys_ = (float(x) for x in open(f"{folder}/{name}.time").read().split())
    broker_ticks = float(open(f"{folder}/{name}.broker").read())
    if "records_per_sec" in data:  # runnel bench: its MB is 2^20 B; recompute in 10^6 B
        if data["records"] != records or data.get("errors"):
            raise SystemExit(f"{name}: {data['records']} records, {data.get('errors')} errors")
        seconds, mb_s = data["elapsed_s"], data["records_per_sec"] * size / 1e6
        client_cpu = 100 * (user + sys_) / real
        broker_cpu = 100 * broker_ticks / clk_tck / real
    else:  # bench_clients.py: over its timed part
        seconds, mb_s = data["seconds"], data["mb_per_s"]
        client_cpu, broker_cpu = data["client_cpu_pct"], data["broker_cpu_pct"]
    latency = data.get("latency_ms") or {}
    return {
        "mb_per_s": round(mb_s, 1), "seconds": seconds,
        "p50_ms": latency.get("p50"), "p99_ms": latency.get("p99"),
        "client_cpu_pct": round(client_cpu), "broker_cpu_pct": round(broker_cpu),
        "process_s": real, "client_cpu_s": round(user + sys_, 3),
    }

workloads = [("produce acks=1", "produce-acks-1"), ("produce acks=all", "produce-acks-all"),
             ("consume", "consume")]
fmt = lambda x, spec: "-" if x is None else format(x, spec)
lat = lambda a, b: "-" if a is None else f"{a:.2f}/{b:.2f}"

print()
print(f"Rust client (runnel bench) vs librdkafka (confluent-kafka): {records} x {size} B, "
      f"MB = 10^6 B of values, {rounds} rounds interleaved (ours first in odd rounds, lib first in even)")
print("lib = confluent-kafka, failed deliveries reported only; lib+DR = a delivery report per "
      "record (its latency), as runnel bench records one per record")
hdr = (f"{'workload':<17}{'round':>7}{'ours MB/s':>10}{'lib MB/s':>9}{'ours/lib':>9}"
       f"{'lib+DR':>8}{'ours/+DR':>9}{'ours p50/p99':>14}{'+DR p50/p99':>13}"
       f"{'CPU ours|lib|+DR':>17}{'broker':>13}")
print(hdr)
print("-" * len(hdr))
summary = {}
for label, key in workloads:
    mine = []
    for r in range(1, rounds + 1):
        row = {"round": r}
        for side in ("ours", "lib", "libdr"):
            try:
                row[side] = load(f"r{r}-{side}-{key}")
            except FileNotFoundError:
                pass
        o, l, d = row["ours"], row["lib"], row.get("libdr")
        row["ratio"] = round(o["mb_per_s"] / l["mb_per_s"], 3)
        row["ratio_dr"] = d and round(o["mb_per_s"] / d["mb_per_s"], 3)
        cpu = "|".join(str(x["client_cpu_pct"]) for x in (o, l, d) if x)
        brk = "|".join(str(x["broker_cpu_pct"]) for x in (o, l, d) if x)
        print(f"{label:<17}{r:>7}{o['mb_per_s']:>10.1f}{l['mb_per_s']:>9.1f}{row['ratio']:>9.2f}"
              f"{fmt(d and d['mb_per_s'], '.1f'):>8}{fmt(row['ratio_dr'], '.2f'):>9}"
              f"{lat(o['p50_ms'], o['p99_ms']):>14}{lat(d and d['p50_ms'], d and d['p99_ms']):>13}"
              f"{cpu:>17}{brk:>13}")
        mine.append(row)

    def med(side, field):
        values = [r[side][field] for r in mine if side in r and r[side][field] is not None]
        return statistics.median(values) if len(values) == len(mine) else None

    m = {"ours_mb_per_s": med("ours", "mb_per_s"), "lib_mb_per_s": med("lib", "mb_per_s"),
         "libdr_mb_per_s": med("libdr", "mb_per_s"),
         "ratio": statistics.median(r["ratio"] for r in mine),
         "ratio_dr": (statistics.median(r["ratio_dr"] for r in mine)
                      if all(r["ratio_dr"] for r in mine) else None),
         "ours_p50_ms": med("ours", "p50_ms"), "ours_p99_ms": med("ours", "p99_ms"),
         "libdr_p50_ms": med("libdr", "p50_ms"), "libdr_p99_ms": med("libdr", "p99_ms")}
    summary[label] = {"median": m, "rounds": mine}
    print(f"{label:<17}{'median':>7}{m['ours_mb_per_s']:>10.1f}{m['lib_mb_per_s']:>9.1f}"
          f"{m['ratio']:>9.2f}{fmt(m['libdr_mb_per_s'], '.1f'):>8}{fmt(m['ratio_dr'], '.2f'):>9}"
          f"{lat(m['ours_p50_ms'], m['ours_p99_ms']):>14}{lat(m['libdr_p50_ms'], m['libdr_p99_ms']):>13}")
print("(ratio medians are medians of the per-round ratios; latency: produce() / send() to the "
      "acknowledgement, ms; CPU: % of one core, client and broker, ours|lib|lib+DR)")
print("CLIENTS_JSON " + json.dumps(summary))
EOF
