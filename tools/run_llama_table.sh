#!/usr/bin/env bash
# Issue 18's table: the editors on the built-in LLaMA-layout model (models/editrt-tiny-llama), batch N = 100 and
# sequential T = 100, on both backends. Reports go to results/llama/EDITOR-PROTOCOL-BACKEND/ (report.json/.md/.svg);
# `tools/results_table.py results/llama/*` makes the README's table.
# Usage: tools/run_llama_table.sh [EDITRT_COMMAND]   (default ./editrt; e.g. "dotnet /tmp/x/editrt.dll" to run from a
# copy while you keep building). EDITORS="..." and BACKENDS="torch vulkan" narrow it.
set -euo pipefail
cd "$(dirname "$0")/.."
RT=${1:-./editrt}
for backend in ${BACKENDS:-torch vulkan}; do
  for editor in ${EDITORS:-MELO MOMoE FT-L GRACE MALMEN EMSEdit}; do
    for protocol in batch sequential; do
      out=results/llama/$editor-$protocol-$backend
      [ -f "$out/report.json" ] && { echo "== $out exists"; continue; }
      echo "== $editor $protocol $backend → $out"
      $RT eval --editor $editor --model models/editrt-tiny-llama --data builtin:counterfact_eval \
        --protocol $protocol --edits 100 --backend $backend --out "$out"
    done
  done
done
