#!/bin/sh
# The quickstart: run both canaries over the recorded metrics on the simulated clock (about
# an hour of rollout in well under a second), then check that checkout succeeded and
# payments rolled back by itself. Needs nothing but a build of rollgate: no Prometheus, no
# cluster. ROLLGATE names the binary (default: rollgate on the PATH).
set -u
here=$(cd "$(dirname "$0")" && pwd)
# The store stays (in a fresh temporary folder) so that the web view can show the runs.
dir=$(mktemp -d)
trap 'rm -f "$dir/outcome"' EXIT
rollgate=${ROLLGATE:-rollgate}
"$rollgate" run "$here" --store "$dir/rollgate.db" --clock simulated \
    --start 2026-01-01T00:00:00Z >"$dir/outcome"
status=$?
cat "$dir/outcome"
# Exit code 5 means a rollout rolled back: payments, on purpose.
if [ "$status" -ne 5 ] || ! grep -q '^checkout: succeeded' "$dir/outcome" \
    || ! grep -q '^payments: rolled-back' "$dir/outcome"; then
    echo "demo: expected checkout to succeed and payments to roll back (exit 5); got exit $status" >&2
    exit 1
fi
echo "demo: checkout succeeded; payments rolled back automatically when its error ratio rose"
echo "demo: to see what happened: rollgate ui --store $dir/rollgate.db --listen 127.0.0.1:8080"
echo "demo: then open http://127.0.0.1:8080 to see what happened (Ctrl-C stops it)"
