#!/usr/bin/env bash
# Loopback load: the demo app bare and behind the layer (examples/load_target.rs), driven by wrk
# with a valid session cookie on a protected route, in alternating rounds. See BENCHMARKS.md.
#
#   scripts/load.sh                 # 3 rounds each, 10 s, 1 thread, 32 connections
#   ROUNDS=5 DURATION=20 CONNECTIONS=64 scripts/load.sh
#   SKIP_BUILD=1 scripts/load.sh    # reuse target/release/examples/load_target
#   STRICT=1 scripts/load.sh        # exit 1 when the ratio misses the target (default: report only)
#
# On two or more cores the server is pinned to core 0 and wrk to core 1 (taskset), so the
# server has one core to itself and wrk does not steal from it. Prints req/s and p50/p99 per
# round, the medians, and the ratio layer/bare of the median req/s: PASS when >= 97 %, else
# MISS (a loaded machine misses; compare within one run). Installs nothing.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
TARGET_RATIO="${TARGET_RATIO:-0.97}"
PATH_UNDER_TEST="${PATH_UNDER_TEST:-/whoami}"

cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk is not installed: install it with 'apt-get install -y wrk' (Debian/Ubuntu) or 'brew install wrk'" >&2
    exit 2
fi

if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release --example load_target
fi
BIN="${CARGO_TARGET_DIR:-target}/release/examples/load_target"
[[ -x "$BIN" ]] || { echo "missing $BIN (build it, or unset SKIP_BUILD)" >&2; exit 2; }

SERVER_PIN=()
WRK_PIN=()
if command -v taskset >/dev/null 2>&1 && [[ "$(nproc)" -ge 2 ]]; then
    SERVER_PIN=(taskset -c 0)
    WRK_PIN=(taskset -c 1)
fi

OUT="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$OUT"
}
trap cleanup EXIT

"${SERVER_PIN[@]}" "$BIN" >"$OUT/server.out" 2>"$OUT/server.err" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    grep -q '^READY$' "$OUT/server.out" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.err" >&2; exit 1; }
    sleep 0.1
done
grep -q '^READY$' "$OUT/server.out" || { echo "load_target did not start" >&2; exit 1; }
BARE_URL="$(sed -n 's/^BARE_URL=//p' "$OUT/server.out")"
LAYER_URL="$(sed -n 's/^LAYER_URL=//p' "$OUT/server.out")"
COOKIE="$(sed -n 's/^COOKIE=//p' "$OUT/server.out")"

# Both must answer 200 with the cookie, and the layer must refuse without it.
check() { # url cookie -> status
    if [[ -n "$2" ]]; then
        curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $2" -H 'Accept: application/json' "$1"
    else
        curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' "$1"
    fi
}
if command -v curl >/dev/null 2>&1; then
    [[ "$(check "$BARE_URL$PATH_UNDER_TEST" "$COOKIE")" == 200 ]] || { echo "bare target not answering 200" >&2; exit 1; }
    [[ "$(check "$LAYER_URL$PATH_UNDER_TEST" "$COOKIE")" == 200 ]] || { echo "layer refused the session" >&2; exit 1; }
    [[ "$(check "$LAYER_URL$PATH_UNDER_TEST" "")" == 401 ]] || { echo "layer did not refuse a request without a session" >&2; exit 1; }
fi

# wrk's `--latency` prints the distribution with units (us, ms, s): normalise to µs.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") print n; else if (u == "ms") print n * 1000; else if (u == "s") print n * 1000000; else print n;
    }'
}

run() { # name url round
    local file="$OUT/$1.$3.txt"
    "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        -H "Cookie: $COOKIE" -H 'Accept: application/json' "$2$PATH_UNDER_TEST" >"$file"
    if grep -q 'Non-2xx or 3xx responses' "$file"; then
        echo "$1 round $3: error responses:" >&2
        cat "$file" >&2
        exit 1
    fi
    local rps p50 p99
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$file")"
    p50="$(to_us "$(awk '$1 == "50%" {print $2}' "$file")")"
    p99="$(to_us "$(awk '$1 == "99%" {print $2}' "$file")")"
    printf '%-6s %5s %12.0f %10.0f %10.0f\n' "$1" "$3" "$rps" "$p50" "$p99"
    echo "$rps $p50 $p99" >>"$OUT/$1.all"
}

median() { # file column
    sort -g -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, GET $PATH_UNDER_TEST with a session cookie; $ROUNDS rounds each, alternating"
echo "server: ${SERVER_PIN[*]:-unpinned} $BIN; wrk: ${WRK_PIN[*]:-unpinned}; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %5s %12s %10s %10s\n' target round 'req/s' 'p50 µs' 'p99 µs'
for round in $(seq 1 "$ROUNDS"); do
    run bare "$BARE_URL" "$round"
    run layer "$LAYER_URL" "$round"
done

BARE_RPS="$(median "$OUT/bare.all" 1)"
LAYER_RPS="$(median "$OUT/layer.all" 1)"
echo
printf '%-6s %12s %10s %10s   (medians of %s rounds)\n' target 'req/s' 'p50 µs' 'p99 µs' "$ROUNDS"
printf '%-6s %12.0f %10.0f %10.0f\n' bare "$BARE_RPS" "$(median "$OUT/bare.all" 2)" "$(median "$OUT/bare.all" 3)"
printf '%-6s %12.0f %10.0f %10.0f\n' layer "$LAYER_RPS" "$(median "$OUT/layer.all" 2)" "$(median "$OUT/layer.all" 3)"
VERDICT="$(awk -v l="$LAYER_RPS" -v b="$BARE_RPS" -v t="$TARGET_RATIO" 'BEGIN {
    r = l / b; printf "ratio layer/bare: %.3f (%.1f %%): %s (target >= %.0f %%)\n", r, 100 * r, (r >= t) ? "PASS" : "MISS", 100 * t
}')"
echo "$VERDICT"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n "${STRICT:-}" && "$VERDICT" == *MISS* ]]; then
    exit 1
fi
