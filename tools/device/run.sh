#!/usr/bin/env bash
# Measures the Vulkan backend on a GPU machine that has no dotnet, no Vulkan loader and no internet, with PyTorch
# CUDA beside it. Run from the repository root with $OUT set; needs the carried .devpub/ (tools/device/publish.sh)
# and .gl/ (the loader debs). Every step has its own timeout and the whole run a budget (DEVICE_BUDGET_S, default
# 330 s), so one hang cannot eat the rest. Results: 8 files in $OUT (summary, env, validate, matmul, ops, model,
# torch_cuda, edits).
#   DEVICE_SMALL=1   small sizes (lavapipe dry run: a few minutes on 2 cores)
#   DEVICE_LOCAL=1   never touch the system (no dpkg -x, no ldconfig); also implied when not root
#   TORCH_DEVICE     cuda (default) or cpu, for tools/device/torch_cuda_bench.py;  PYTHON: its interpreter
#   DEVICE_SKIP      comma-separated steps to leave out: validate,matmul,ops,model,torch,edits
#   DEVICE_ICD_LIBS  driver libraries to write a Vulkan ICD manifest for when none works (default: NVIDIA's)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
OUT="${OUT:-/tmp/devout}"
mkdir -p "$OUT"
SMALL="${DEVICE_SMALL:-0}"
LOCAL="${DEVICE_LOCAL:-0}"
[ "$(id -u)" = 0 ] || LOCAL=1
if [ "$SMALL" = 1 ]; then BUDGET="${DEVICE_BUDGET_S:-900}"; else BUDGET="${DEVICE_BUDGET_S:-330}"; fi
PY="${PYTHON:-python3}"
T0=$(date +%s)
SUM="$OUT/summary.txt"; ENV="$OUT/env.txt"
: >"$SUM"; : >"$ENV"
for f in validate matmul ops model torch_cuda edits; do : >"$OUT/$f.txt"; done

say() { echo "$*" | tee -a "$SUM"; }
want() { case ",${DEVICE_SKIP:-}," in *",$1,"*) return 1;; esac; return 0; }
LAST_RC=0
elapsed() { echo $(( $(date +%s) - T0 )); }

# step NAME FILE LIMIT_S CMD...: runs CMD under its own timeout (capped by what is left of the budget), all its
# output appended to $OUT/FILE, one summary line; prints the last lines of the output too.
step() {
  local name="$1" file="$OUT/$2" lim="$3"; shift 3
  local rem=$(( BUDGET - $(elapsed) ))
  if [ "$rem" -lt 8 ]; then say "$(printf '%-34s SKIPPED (budget of %s s spent)' "$name" "$BUDGET")"; LAST_RC=125; return 0; fi
  [ "$lim" -gt "$rem" ] && lim="$rem"
  { echo; echo "### $name: $* (limit ${lim} s, at +$(elapsed) s)"; } >>"$file"
  local s e rc first
  first=$(( $(wc -l <"$file") + 1 ))
  s=$(date +%s.%N)
  timeout -k 5 "$lim" "$@" >>"$file" 2>&1 </dev/null
  rc=$?
  e=$(date +%s.%N)
  LAST_RC=$rc
  local dt; dt=$(awk -v a="$s" -v b="$e" 'BEGIN{printf "%.1f", b-a}')
  local note=""; { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && note=" TIMEOUT"
  echo "### $name: rc $rc, ${dt} s$note" >>"$file"
  say "$(printf '%-34s rc=%-3s %7s s  (limit %s s)%s' "$name" "$rc" "$dt" "$lim" "$note")"
  # what this step printed: the lines matching $SHOW, else its last $TAIL lines
  if [ -n "${SHOW:-}" ]; then tail -n "+$first" "$file" | grep -E "$SHOW"; else tail -n "+$first" "$file" | grep -v '^### ' | tail -n "${TAIL:-3}"; fi \
    | sed 's/^/    /' | cut -c1-200
  return 0
}

say "tools/device/run.sh on ${HOSTNAME:-$(cat /etc/hostname 2>/dev/null)} at $(date -u +%FT%TZ); SMALL=$SMALL LOCAL=$LOCAL budget ${BUDGET} s${DEVICE_SKIP:+; skipping $DEVICE_SKIP}"
{ cat .devpub/MANIFEST; uname -a; head -3 /etc/os-release; echo "cpus $(nproc)"; free -g | head -2; ldd --version | head -1; } >>"$ENV" 2>&1

# ------------------------------------------------------------------ 1. the Vulkan loader (+ GL dispatch) from .gl/
extract_deb() {  # extract_deb DEB DIR   (dpkg -x, else a python ar + tar reader)
  if command -v dpkg >/dev/null; then dpkg -x "$1" "$2"; return; fi
  "$PY" - "$1" "$2" <<'EOF'
import io, sys, tarfile
data = open(sys.argv[1], "rb").read(); pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/"); size = int(data[pos + 48:pos + 58])
    body = data[pos + 60:pos + 60 + size]; pos += 60 + size + (size & 1)
    if name.startswith("data.tar"):
        tarfile.open(fileobj=io.BytesIO(body)).extractall(sys.argv[2])
EOF
}
if [ "$LOCAL" != 1 ]; then
  if ls .gl/*.deb >/dev/null 2>&1; then
    rm -rf /tmp/gl-root && mkdir -p /tmp/gl-root
    for f in .gl/*.deb; do extract_deb "$f" /tmp/gl-root || echo "could not extract $f" >>"$ENV"; done
    # No clobbering: a library the image already has (perhaps newer) stays.
    cp -an /tmp/gl-root/usr / 2>>"$ENV" || cp -rn /tmp/gl-root/usr / 2>>"$ENV"
    ldconfig 2>>"$ENV"
    say "loader: $(ls .gl/*.deb | wc -l) debs extracted (no clobber), ldconfig done"
  else
    say "loader: no .gl/*.deb carried; relying on the image's libvulkan.so.1"
  fi
else
  say "loader: DEVICE_LOCAL (or not root): system left alone"
fi
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d "$d" ] && case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d";; esac
done

# ------------------------------------------------------------------ 2. the published CLI
APP=/tmp/editrt-dev
rm -rf "$APP" && mkdir -p "$APP"
ARCH=.devpub/editrt-linux-x64.tar.xz
if [ ! -f "$ARCH" ]; then say "FATAL: $ARCH missing (run tools/device/publish.sh and carry .devpub)"; exit 1; fi
if ! tar -xJf "$ARCH" -C "$APP" 2>>"$ENV"; then
  "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$ARCH" "$APP" || { say "FATAL: cannot unpack $ARCH"; exit 1; }
fi
E="$APP/editrt/editrt"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
say "app: $("$E" --version 2>&1 | head -1) unpacked to $APP at +$(elapsed) s"

# ------------------------------------------------------------------ 3. find the NVIDIA Vulkan driver
{
  echo; echo "### driver discovery"
  env | grep -E '^(NVIDIA|CUDA|VK_|LD_LIBRARY)' | sort
  ldconfig -p 2>/dev/null | grep -Ei 'nvidia|vulkan|GLdispatch|libGLX|libEGL' | head -40
  ls -la /usr/local/nvidia /usr/local/nvidia/share/vulkan/icd.d /etc/vulkan/icd.d /usr/share/vulkan/icd.d 2>&1 | head -40
} >>"$ENV"
has_gpu() {  # an NVIDIA (or any non-CPU) device listed by editrt devices
  timeout -k 5 60 "$E" devices >/tmp/editrt-devices.txt 2>&1
  grep -q '^\[[0-9]*\]' /tmp/editrt-devices.txt && { [ "$SMALL" = 1 ] || grep -qiE 'nvidia|discrete' /tmp/editrt-devices.txt; }
}
use_icd() { export VK_DRIVER_FILES="$1" VK_ICD_FILENAMES="$1"; echo "trying ICD $1" >>"$ENV"; }
if ! has_gpu; then
  found=0
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json \
           /usr/share/vulkan/icd.d/nvidia_icd.json /usr/local/share/vulkan/icd.d/nvidia_icd.json \
           $(find /usr/local/nvidia /etc /usr/share /usr/local/share -maxdepth 5 -name 'nvidia_icd*.json' 2>/dev/null); do
    [ -f "$f" ] || continue
    use_icd "$f"; if has_gpu; then found=1; break; fi
  done
  if [ "$found" = 0 ]; then  # no (working) manifest: write one for the driver library itself
    for lib in ${DEVICE_ICD_LIBS:-libGLX_nvidia.so.0 libEGL_nvidia.so.0}; do
      p=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l {print $NF; exit}')
      [ -n "$p" ] || p=$(find /usr/lib /usr/lib64 /usr/local/nvidia /lib -maxdepth 3 -name "$lib" 2>/dev/null | head -1)
      [ -n "$p" ] || continue
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$p" >"/tmp/icd-$lib.json"
      use_icd "/tmp/icd-$lib.json"; if has_gpu; then found=1; break; fi
    done
  fi
  if [ "$found" = 0 ]; then
    unset VK_DRIVER_FILES VK_ICD_FILENAMES
    { echo "### no GPU Vulkan device found; loader debug:"; VK_LOADER_DEBUG=error,warn,driver timeout 60 "$E" devices 2>&1 | head -120; } >>"$ENV"
    say "vulkan: NO GPU DEVICE FOUND (see env.txt); the Vulkan steps will fail"
  fi
fi
say "vulkan: VK_DRIVER_FILES=${VK_DRIVER_FILES:-<loader default>}; $(grep -m1 '^\[[0-9]*\] \*' /tmp/editrt-devices.txt || echo 'no device selected')"

# ------------------------------------------------------------------ 4. the steps
TAIL=0 step "nvidia-smi" env.txt 20 nvidia-smi
TAIL=0 step "nvidia-smi query" env.txt 20 nvidia-smi --query-gpu=name,driver_version,pstate,clocks.sm,clocks.max.sm,power.limit,memory.total --format=csv
SHOW='^(\[[0-9]+\]|Vulkan loader|     (type|driver|Vulkan API|device memory))' step "editrt devices" env.txt 60 "$E" devices

want validate && SHOW='passed|FAIL|rror|not deployed|libtorch' step "validate --seed 42" validate.txt 60 "$E" validate --seed 42

if [ "$SMALL" = 1 ]; then SIZES=256,512; else SIZES=256,512,1024,2048,4096; fi
want matmul && TAIL=8 step "bench matmul --check" matmul.txt 150 "$E" bench matmul --sizes "$SIZES" --check
if want matmul && { [ "$LAST_RC" = 124 ] || [ "$LAST_RC" = 137 ]; }; then  # the float64 host check is what takes long: time without it
  TAIL=4 step "bench matmul (no check)" matmul.txt 60 "$E" bench matmul --sizes "$SIZES"
fi
[ "$SMALL" = 1 ] || ! want matmul || TAIL=4 step "bench matmul op shapes" matmul.txt 60 "$E" bench matmul --sizes 128x3072x768,128x768x3072,128x50257x768

if [ "$SMALL" = 1 ]; then OPSARGS=(--repeat 3); else OPSARGS=(); fi
want ops && TAIL=20 step "bench ops --backend vulkan" ops.txt 120 "$E" bench ops --backend vulkan ${OPSARGS[@]+"${OPSARGS[@]}"}

if [ "$SMALL" = 1 ]; then
  MODELS=("--batch 4 --seq 16 --repeat 1 --dims 2048,64,192,4,6 --no-gpt2")
  TORCHMODEL=(--models 4x16 --dims 2048,64,192,4,6 --no-gpt2 --model-repeat 3)
  TORCHSIZES=256,512
else
  MODELS=("--batch 4 --seq 32 --repeat 5" "--batch 8 --seq 128 --repeat 5")
  TORCHMODEL=(--models 4x32,8x128)
  TORCHSIZES=$SIZES,128x3072x768,128x768x3072,128x50257x768
fi
for m in "${MODELS[@]}"; do
  # shellcheck disable=SC2086
  want model && TAIL=2 step "bench model $(echo "$m" | awk '{print $2 "x" $4}')" model.txt 120 "$E" bench model --backend vulkan $m
done

want torch && SHOW='^(torch |device:|[0-9]+x[0-9]+x[0-9]+ |gpt2|custom|total|torch_cuda_bench:)|error' step "torch_cuda_bench.py" torch_cuda.txt 180 "$PY" tools/device/torch_cuda_bench.py --device "${TORCH_DEVICE:-cuda}" --sizes "$TORCHSIZES" "${TORCHMODEL[@]}"

if [ "$SMALL" = 1 ]; then EDITS=2; else EDITS=10; fi
EDITORS=(FT-L GRACE MELO MOMoE)
[ -f models/editrt-tiny/malmen/hypernet.safetensors ] && EDITORS+=(MALMEN) || say "MALMEN: no models/editrt-tiny/malmen/hypernet.safetensors, skipped"
[ -f models/editrt-tiny/mend/hypernet.safetensors ] && EDITORS+=(MEND) || say "MEND: no models/editrt-tiny/mend/hypernet.safetensors, skipped"
for ed in "${EDITORS[@]}"; do
  want edits && SHOW='^(ES |time per edit|profile:|error|Unhandled)' step "eval $ed ($EDITS edits)" edits.txt 90 "$E" eval --editor "$ed" --model models/editrt-tiny --data builtin:zsre_eval \
    --protocol sequential --edits "$EDITS" --curve-every 0 --backend vulkan --profile
done

say "total $(elapsed) s"
echo
echo "==== summary ($SUM)"
cat "$SUM"
echo "==== key lines"
grep -hE '^(device:|[0-9]+x[0-9]+x[0-9]+ |check:|gpt2|custom|[0-9]+ of [0-9]+ passed|ES )' "$OUT/matmul.txt" "$OUT/model.txt" "$OUT/validate.txt" "$OUT/edits.txt" | cut -c1-160
grep -hE '^(torch |[0-9]+x[0-9]+x[0-9]+ |gpt2|custom|torch_cuda_bench:)' "$OUT/torch_cuda.txt" | cut -c1-160
ls -la "$OUT"
