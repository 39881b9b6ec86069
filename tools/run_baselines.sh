#!/usr/bin/env bash
# Issue 5's acceptance runs: FT-L and GRACE on the built-in model, T=100 sequential and N=100 batch,
# on both backends. Reports go to results/baselines/EDITOR-PROTOCOL-BACKEND/ (report.json/.md/.svg).
# Usage: tools/run_baselines.sh [EDITRT_COMMAND]   (default ./editrt; pass e.g. "dotnet /tmp/x/editrt.dll"
# to run from a copy while you keep building). Backends: BACKENDS="torch vulkan" (default).
set -euo pipefail
cd "$(dirname "$0")/.."
RT=${1:-./editrt}
DATA=${DATA:-models/editrt-tiny/data}
[ -f "$DATA/counterfact_eval.json" ] || $RT world --out "$DATA" --seed 1234
for backend in ${BACKENDS:-torch vulkan}; do
  for editor in ft-l grace; do
    for protocol in sequential batch; do
      out=results/baselines/$editor-$protocol-$backend
      echo "== $editor $protocol $backend → $out"
      $RT eval --editor $editor --model models/editrt-tiny --data "$DATA/counterfact_eval.json" \
        --protocol $protocol --edits 100 --backend $backend --out "$out"
    done
  done
done
