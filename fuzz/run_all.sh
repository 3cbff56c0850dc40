#!/bin/sh
# Runs every fuzz target in turn (one job at a time) on fuzz/corpus-full/<target> (seed it with
# seeds/make_seeds.py, or copy fuzz/corpus/<target>), logging to logs/<target>.log.
# Usage, from fuzz/: ./run_all.sh [runs] [seconds-per-target] [target...]
set -u
RUNS=${1:-10000000}
SECS=${2:-1800}
shift 2 2>/dev/null
TARGETS=${*:-"session_cookie callback_query redirect role_map discovery token_response session_verify jwks"}
cargo +nightly fuzz build -O || exit 1
mkdir -p logs
for t in $TARGETS; do
    mkdir -p "corpus-full/$t" "artifacts/$t"
    echo "== $t $(date -u +%FT%TZ)"
    target/x86_64-unknown-linux-gnu/release/"$t" "corpus-full/$t" \
        -runs="$RUNS" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1
    echo "   exit $?: $(grep -E '^Done|stat::number_of_executed_units|stat::average_exec_per_sec' "logs/$t.log" | tr '\n' ' ')"
done
