#!/usr/bin/env bash
# Scale benchmark for history-sized replays (not run in CI): replays N generated signals through
# `cascade run` on an embedded broker and reports the peak RSS of every cascade process (run,
# which embeds the broker; replay; totals; trace) and how long trace takes.
#   scripts/scale-bench.sh 100000 && scripts/scale-bench.sh 1000000
# Compare the two runs' peak RSS figures: the bound is 1.2x.
# The de-dup window is sized on purpose: JetStream keeps every id inside it (about 300 bytes
# each, measured with pprof, more than the ~130 often quoted), and the window only has to cover
# a redelivery (ack wait) plus publish retries, so 10 s with a 5 s ack wait. At ~30k messages/s
# the default 2 m window alone would hold ~3.6M ids, over 1 GiB.
# run's live heap is ~300 MiB at any size (mostly the broker's block buffers, then the de-dup
# ids); without a limit Go lets the heap grow to twice the live size before collecting, so the
# peak depends on GC timing. --memory-limit 700 MiB makes the bound explicit.
set -euo pipefail
n=${1:-100000}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $run_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/cascade" ./cmd/cascade
cascade="$work/cascade"
export CASCADE_NATS_URL=nats://127.0.0.1:24222 CASCADE_LOG_LEVEL=warn
"$cascade" publish --generate "$n" --seed 7 --print > "$work/signals.ndjson"
env -u CASCADE_NATS_URL "$cascade" run --data-dir "$work/data" --nats-listen 127.0.0.1:24222 --http-listen 127.0.0.1:28080 --dedup-window 10s --ack-wait 5s --memory-limit 734003200 --pprof 2> "$work/run.log" &
run_pid=$!
until "$cascade" scenario ls >/dev/null 2>&1; do sleep 0.2; done

peak() { # peak RSS in MiB of a finished command run under /usr/bin/time-like accounting
  /usr/bin/env time -f '%M' -o "$work/rss" "$@" > "$work/out" && echo $(( $(cat "$work/rss") / 1024 ))
}
start=$(date +%s)
replay_rss=$(peak "$cascade" replay "$work/signals.ndjson")
cat "$work/out"
# Wait until every layer has acknowledged everything.
while :; do
  lag=$("$cascade" scenario show base | awk '/"lag"/,/}/' | grep -oE '[0-9]+' | paste -sd+ | bc)
  [ "${lag:-1}" = 0 ] && break
  sleep 2
done
echo "pipeline drained in $(( $(date +%s) - start )) s"
totals_rss=$(peak "$cascade" totals)
sed -n 1p "$work/out"
id=$(sed -n '1s/.*"id":"\([^"]*\)".*/\1/p' "$work/signals.ndjson")
sleep 3 # let run's index catch up with the last events
t0=$(date +%s.%N)
trace_rss=$(peak "$cascade" trace "$id")
t1=$(date +%s.%N)
grep -c . "$work/out" | sed 's/^/trace lines: /'
run_rss=$(( $(grep VmHWM /proc/$run_pid/status | awk '{print $2}') / 1024 ))
printf 'signals %d\npeak RSS MiB: run (with the embedded broker) %d, replay %d, totals %d, trace %d\ntrace took %.3f s\n' \
  "$n" "$run_rss" "$replay_rss" "$totals_rss" "$trace_rss" "$(echo "$t1 - $t0" | bc)"
