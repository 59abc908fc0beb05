#!/bin/sh
# The demo's exec target: "set the canary weight to N" is writing N where the traffic
# driver and the canary read it. Idempotent (the same step twice writes the same weight)
# and atomic (written aside, then renamed). DEMO_STATE is the demo's state folder.
set -eu
: "${DEMO_STATE:?set DEMO_STATE to the demo state folder}"
file="$DEMO_STATE/$ROLLGATE_ROLLOUT.weight"
printf '%s\n' "$ROLLGATE_WEIGHT" > "$file.tmp"
mv "$file.tmp" "$file"
echo "$ROLLGATE_ROLLOUT: $ROLLGATE_OPERATION → canary weight $ROLLGATE_WEIGHT %"
