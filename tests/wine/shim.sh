#!/usr/bin/env bash
# Builds the ProcessPrng stand-in (bcryptprimitives.c, beside this script) as
# DIR/bcryptprimitives.dll. Wine 8 (Debian 12's) lacks bcryptprimitives.dll, whose ProcessPrng
# Rust's std (1.78 and later) imports on Windows: every Rust-built executable and DLL (our CLI,
# our plugins, clap-validator.exe) needs it. A DLL in an executable's folder comes before the
# system's, so put the stand-in beside the executable Wine runs (the plugin DLLs it loads then
# find it too). Used by tests/wine.rs and .ci/validators.sh.
# MDX_STEMS_MINGW_GCC: the mingw-w64 compiler, default x86_64-w64-mingw32-gcc-posix (the linker
# of .cargo/config.toml; Debian's gcc-mingw-w64-x86-64-posix).
set -euo pipefail
dir=${1:?usage: tests/wine/shim.sh DIR}
"${MDX_STEMS_MINGW_GCC:-x86_64-w64-mingw32-gcc-posix}" -shared -O2 -o "$dir/bcryptprimitives.dll" \
  "$(dirname "$0")/bcryptprimitives.c" -ladvapi32
