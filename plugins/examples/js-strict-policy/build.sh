#!/bin/sh
# Build strict-policy.wasm from policy.js with componentize-js (StarlingMonkey inside a
# component). Needs node and the npm registry once (npm install); then works offline.
# Every WASI feature is disabled: a failure policy needs none, and rollgate refuses
# components that import what it does not provide.
set -eu
cd "$(dirname "$0")"
[ -d node_modules/@bytecodealliance/componentize-js ] || npm install --no-audit --no-fund
# componentize-js reads the WIT through a sandboxed wasm-tools that sees only this folder.
rm -rf wit && cp -r ../../../wit wit
npx componentize-js policy.js --wit wit --world-name failure-policy \
    -d stdio random clocks http fetch-event -o strict-policy.wasm
rm -rf wit
echo "built $(pwd)/strict-policy.wasm"
