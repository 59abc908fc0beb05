#!/bin/sh
# The whole loop on real parts, in one command: two apps (shop, pay), each with a stable and
# a canary instance of the demo service, a traffic driver per app split by the canary
# weight, a real Prometheus scraping all four every second, and `rollgate run` rolling both
# canaries out with its live status tree. shop's canary is healthy and is promoted to
# 100 %; pay's canary turns bad at 25 % and rollgate rolls it back by itself.
#
# Needs Debian's `prometheus` package and python3 (to find free ports). Builds rollgate and
# the demo service unless ROLLGATE and ROLLGATE_DEMO name the binaries. Every process it
# starts is stopped (by PID) when it ends, however it ends. Takes about two minutes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! command -v prometheus >/dev/null 2>&1; then
    echo "demo: needs Prometheus: apt-get install prometheus (its service need not run)" >&2
    exit 4
fi
if [ -z "${ROLLGATE:-}" ] || [ -z "${ROLLGATE_DEMO:-}" ]; then
    echo "demo: building rollgate and the demo service..." >&2
    (cd "$root" && cargo build -q -p rollgate --bin rollgate --bin rollgate-demo) || exit 3
fi
rollgate=${ROLLGATE:-$root/target/debug/rollgate}
demo=${ROLLGATE_DEMO:-$root/target/debug/rollgate-demo}

DEMO_STATE=$(mktemp -d)
export DEMO_STATE
state=$DEMO_STATE
: > "$state/pids"
cleanup() {
    while read -r pid; do
        kill "$pid" 2>/dev/null
    done < "$state/pids"
    wait 2>/dev/null
    rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME COMMAND...: run it in the background, remember its PID, log to NAME.log.
start() {
    name=$1
    shift
    "$@" > "$state/$name.log" 2>&1 &
    echo $! >> "$state/pids"
}

# service NAME ARGS...: start one demo service; prints its host:port once it listens.
service() {
    name=$1
    shift
    start "$name" "$demo" service --listen 127.0.0.1:0 "$@"
    tries=0
    until grep -q 'listening on' "$state/$name.log" 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ]; then
            echo "demo: $name did not start:" >&2
            cat "$state/$name.log" >&2
            exit 3
        fi
        sleep 0.1
    done
    sed -n 's|.*listening on http://||p' "$state/$name.log" | head -n 1
}

shop_v1=$(service shop-v1 --app shop --track stable --version v1 --error-rate 0.005 --latency-ms 20) || exit 3
shop_v2=$(service shop-v2 --app shop --track canary --version v2 --error-rate 0.005 --latency-ms 20) || exit 3
pay_v1=$(service pay-v1 --app pay --track stable --version v1 --error-rate 0.005 --latency-ms 20) || exit 3
pay_v2=$(service pay-v2 --app pay --track canary --version v2 --error-rate 0.005 --latency-ms 20 \
    --weight-file "$state/pay.weight" --bad-from-weight 25 --bad-error-rate 0.3 --bad-latency-ms 120) || exit 3

prom_port=$(free_port)
cat > "$state/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: demo
    static_configs:
      - targets: ['$shop_v1', '$shop_v2', '$pay_v1', '$pay_v2']
EOF
start prometheus prometheus --config.file="$state/prometheus.yml" \
    --storage.tsdb.path="$state/tsdb" --web.listen-address="127.0.0.1:$prom_port" --log.level=warn
sed "s|http://127.0.0.1:19090|http://127.0.0.1:$prom_port|" "$here/rollgate/backends.yaml" > "$state/backends.yaml"

start shop-traffic "$demo" traffic --stable "http://$shop_v1/" --canary "http://$shop_v2/" \
    --weight-file "$state/shop.weight" --rps 40
start pay-traffic "$demo" traffic --stable "http://$pay_v1/" --canary "http://$pay_v2/" \
    --weight-file "$state/pay.weight" --rps 40

echo "demo: Prometheus on http://127.0.0.1:$prom_port, waiting for it to scrape all four instances..." >&2
tries=0
until "$rollgate" metrics query --backends "$state/backends.yaml" --backend prom \
    --query 'count(up{job="demo"} == 1) == 4' >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ]; then
        echo "demo: Prometheus never scraped the services:" >&2
        cat "$state/prometheus.log" >&2
        exit 3
    fi
    sleep 0.1
done
# A few seconds of traffic, so the first rates have samples.
sleep 5

"$rollgate" run "$here/rollgate/rollouts.yaml" "$here/rollgate/templates.yaml" "$state/backends.yaml" \
    --store "$state/rollgate.db" > "$state/outcome"
status=$?
cat "$state/outcome"
echo
"$rollgate" get pay --store "$state/rollgate.db"
echo
echo "demo: how pay was rolled back (rollgate history pay):"
"$rollgate" history pay --store "$state/rollgate.db" | grep -E 'policy:|rolled-back|ACTOR' || true
# Exit code 5 means a rollout rolled back: pay, on purpose.
if [ "$status" -ne 5 ] || ! grep -q '^shop: succeeded' "$state/outcome" \
    || ! grep -q '^pay: rolled-back' "$state/outcome"; then
    echo "demo: expected shop to succeed and pay to roll back (exit 5); got exit $status" >&2
    exit 1
fi
echo "demo: shop's healthy canary went to 100 %; pay's bad canary was caught at 25 % and rolled back"
