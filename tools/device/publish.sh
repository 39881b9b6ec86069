#!/usr/bin/env bash
# Prepares what tools/device/run.sh needs on a machine without dotnet, Vulkan loader or internet:
#   .devpub/editrt-linux-x64.tar.xz  a self-contained linux-x64 `dotnet publish` of the CLI (the .NET runtime,
#                                    editrt, the engine with its SPIR-V shaders embedded, the editor plugins with
#                                    their hparams embedded, KeraLua's liblua54.so, the Torch shim) as editrt/
#   .devpub/MANIFEST                 build commit, sizes, sha256 of the archive
#   .gl/*.deb                        the Vulkan loader and GL/EGL dispatch libraries (amd64 debs; dpkg -x'ed there)
# Both folders are listed in .git/info/exclude (not .gitignore) and travel as carried paths.
# The publish is made from a copy of the working tree under $DEVPUB_STAGE (default /tmp/editrt-devpub), so the
# repository's own bin/ and obj/ (and anyone building there) are left alone.
# Usage: bash tools/device/publish.sh [--no-debs]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
stage="${DEVPUB_STAGE:-/tmp/editrt-devpub}"
pub="$root/.devpub"
archive="$pub/editrt-linux-x64.tar.xz"
want_debs=1
[ "${1:-}" = "--no-debs" ] && want_debs=0

exclude="$(git rev-parse --git-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
touch "$exclude"
for p in /.devpub/ /.gl/; do grep -qxF "$p" "$exclude" || echo "$p" >>"$exclude"; done

t0=$(date +%s)
# 1. A copy of the working tree (tracked + untracked-not-ignored files that exist), without bin/obj.
rm -rf "$stage/src" "$stage/editrt"
mkdir -p "$stage/src"
git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -xf - -C "$stage/src"

# The commit the binaries say they were built from (the copy has no .git; Directory.Build.targets then keeps this).
rev="$(git rev-parse HEAD)"
[ -n "$(git status --porcelain --untracked-files=no)" ] && rev="$rev.dirty"

# 2. Self-contained publish. No trimming (reflection: the editor registry scans EditRuntime.Editors*.dll, the Torch
#    backend is loaded by name), no single file (the registry looks for the plugin dll beside the application).
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet publish "$stage/src/engine/EditRuntime.Cli/EditRuntime.Cli.csproj" -c Release -r linux-x64 --self-contained true \
  -p:InvariantGlobalization=true -p:SatelliteResourceLanguages=en -p:GenerateDocumentationFile=false \
  -p:SourceRevisionId="$rev" -o "$stage/editrt" --nologo --verbosity quiet -clp:ErrorsOnly
# Runtime files nothing here loads (debugger access, dump tool, standalone GCs, LTTng tracing): about 7 MB.
rm -f "$stage/editrt"/{libmscordaccore.so,libmscordbi.so,createdump,libclrgc.so,libclrgcexp.so,libcoreclrtraceptprovider.so}
# Other platforms' native Lua builds, if any came along.
find "$stage/editrt/runtimes" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} + 2>/dev/null || true
for f in editrt EditRuntime.Engine.dll EditRuntime.Editors.dll; do
  [ -f "$stage/editrt/$f" ] || { echo "publish.sh: $f missing from the publish output" >&2; exit 1; }
done
# The shaders are embedded resources of the engine: make sure they are there.
nspv=$(grep -c -a -o 'shaders/[a-z_/0-9]*\.spv' "$stage/editrt/EditRuntime.Engine.dll" || true)
echo "publish.sh: publish $(du -sh "$stage/editrt" | cut -f1), engine dll names $nspv embedded .spv resources"
[ "$nspv" -gt 0 ] || { echo "publish.sh: no embedded SPIR-V found in EditRuntime.Engine.dll" >&2; exit 1; }
"$stage/editrt/editrt" --version

# 3. One archive (xz: present on nearly every image, and python3's lzma reads it where xz is not).
mkdir -p "$pub"
rm -f "$archive"
tar -C "$stage" --owner=0 --group=0 -cf - editrt | xz -9e -T0 >"$archive.tmp"
mv "$archive.tmp" "$archive"
{
  echo "build $rev"
  echo "made $(date -u +%FT%TZ) by tools/device/publish.sh"
  echo "publish_bytes $(du -sb "$stage/editrt" | cut -f1)"
  echo "archive_bytes $(stat -c %s "$archive")"
  (cd "$pub" && sha256sum "$(basename "$archive")")
} >"$pub/MANIFEST"
echo "publish.sh: $archive $(stat -c %s "$archive") bytes ($(( $(date +%s) - t0 )) s)"

# 4. The Vulkan loader and the GL dispatch libraries the NVIDIA ICD links against (amd64, whatever this host is).
if [ "$want_debs" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  $SUDO apt-get $o update -qq
  rm -f .gl/*.deb
  # shellcheck disable=SC2086
  (cd .gl && $SUDO apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  ls -l .gl
fi
echo "publish.sh: carried paths: .devpub $(du -sb .devpub | cut -f1) bytes, .gl $(du -sb .gl 2>/dev/null | cut -f1) bytes"
