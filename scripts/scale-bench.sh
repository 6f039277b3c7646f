#!/usr/bin/env bash
# Scale benchmark for history-sized replays (not run in CI): replays N generated signals through
# `cascade run` on an embedded broker and reports the peak RSS of every cascade process (run,
# which embeds the broker; replay; totals; trace), how long trace takes, and when run's
# resident memory (sampled every 5 s) was highest: during the replay or after it.
#   scripts/scale-bench.sh 100000 && scripts/scale-bench.sh 1000000
#   RUN_FLAGS='--dedup-window 30s' scripts/scale-bench.sh 100000   # extra flags for run
# Compare the two runs' peak RSS figures: the bound is 1.2x. run uses its defaults (among them
# --memory-limit 384MiB and the 10s de-dup window) unless RUN_FLAGS says otherwise; see
# docs/performance.md for what the memory is made of.
set -euo pipefail
n=${1:-100000}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $run_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/cascade" ./cmd/cascade
cascade="$work/cascade"
nport=${NATS_PORT:-24222} hport=${HTTP_PORT:-28080}
export CASCADE_NATS_URL=nats://127.0.0.1:$nport CASCADE_LOG_LEVEL=warn
"$cascade" publish --generate "$n" --seed 7 --print > "$work/signals.ndjson"
env -u CASCADE_NATS_URL "$cascade" run --data-dir "$work/data" --nats-listen 127.0.0.1:$nport --http-listen 127.0.0.1:$hport --pprof ${RUN_FLAGS:-} 2> "$work/run.log" &
run_pid=$!
until "$cascade" scenario ls >/dev/null 2>&1; do sleep 0.2; done

peak() { # peak RSS in MiB of a finished command run under /usr/bin/time-like accounting
  /usr/bin/env time -f '%M' -o "$work/rss" "$@" > "$work/out" && echo $(( $(cat "$work/rss") / 1024 ))
}
start=$(date +%s)
# run's resident memory every 5 s, to tell when its peak came (the replay's bursts or late).
(while kill -0 $run_pid 2>/dev/null; do
  echo "$(( $(date +%s) - start )) $(awk '/VmRSS/{print $2}' /proc/$run_pid/status 2>/dev/null)"
  sleep 5
done) > "$work/rss.log" &
replay_rss=$(peak "$cascade" replay "$work/signals.ndjson")
cat "$work/out"
replayed=$(( $(date +%s) - start ))
# Wait until every layer has acknowledged everything.
while :; do
  lag=$("$cascade" scenario show base | awk '/"lag"/,/}/' | grep -oE '[0-9]+' | paste -sd+ | bc)
  [ "${lag:-1}" = 0 ] && break
  sleep 2
done
drained=$(( $(date +%s) - start ))
echo "pipeline drained in $drained s"
totals_rss=$(peak "$cascade" totals)
sed -n 1p "$work/out"
id=$(sed -n '1s/.*"id":"\([^"]*\)".*/\1/p' "$work/signals.ndjson")
sleep 3 # let run's index catch up with the last events
t0=$(date +%s.%N)
trace_rss=$(peak "$cascade" trace "$id")
t1=$(date +%s.%N)
grep -c . "$work/out" | sed 's/^/trace lines: /'
if [ -n "${PROFILE_DIR:-}" ]; then # run's heap at the end, for go tool pprof
  curl -sf "http://127.0.0.1:$hport/debug/pprof/heap" > "$PROFILE_DIR/heap-$n.pb.gz"
fi
run_rss=$(( $(grep VmHWM /proc/$run_pid/status | awk '{print $2}') / 1024 ))
printf 'signals %d\npeak RSS MiB: run (with the embedded broker) %d, replay %d, totals %d, trace %d\ntrace took %.3f s\n' \
  "$n" "$run_rss" "$replay_rss" "$totals_rss" "$trace_rss" "$(echo "$t1 - $t0" | bc)"
awk -v r="$replayed" -v d="$drained" '$2 > 0 {
  if ($2 > max) { max = $2; at = $1 }
  if ($1 <= r && $2 > maxr) maxr = $2
  if ($1 > r && $2 > maxd) maxd = $2
} END {
  printf "run RSS sampled every 5 s: highest %d MiB at %d s; during the replay (0-%d s) %d MiB, after it (the drain, drained at %d s, and the queries) %d MiB\n", max / 1024, at, r, maxr / 1024, d, maxd / 1024
}' "$work/rss.log"
