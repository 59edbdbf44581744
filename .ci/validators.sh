#!/usr/bin/env bash
# Every public plugin validator on the bundles of one folder (issue #20; .ci/run runs it):
#   .ci/validators.sh [BUNDLE_DIR]     (default: the project's target/bundled)
# BUNDLE_DIR holds `MDX Stems.clap` and `MDX Stems.vst3`, two plugins each ("MDX Stems" and
# "MDX Stems (Stereo)"), for Linux (ELF) or Windows (PE, `target/bundled/x86_64-pc-windows-gnu`).
# - Linux: clap-validator `validate`, the VST3 SDK's validator plain and with `-e`, pluginval at
#   strictness 10 under Xvfb (its editor tests included); each of them twice: with no model
#   installed (the default built-in separator) and with a small MDX23C fixture in the models
#   folder.
# - Windows, under Wine: clap-validator.exe and validator.exe (plain and `-e`), each twice: with
#   no model and with the fixture.
# Prints, per run, a line per plugin with the counts the tool reports and a total line with the
# wall time and the verdict; the log of a failed run. Exits 1 when any run failed (after making
# them all), 2 when the bundles or tools are missing.
# The validators come prebuilt from ../shared/tools/validators (its README.md;
# MDX_STEMS_VALIDATORS names another folder). Every run gets empty model folders and a scratch
# HOME, so no model of this machine's user is found. Wine: MDX_STEMS_WINE (default
# /usr/lib/wine/wine64, Debian's wine64), the ProcessPrng stand-in of tests/wine/shim.sh, a fresh
# prefix in the scratch HOME unless WINEPREFIX names one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/target/bundled}
[ -d "$dir" ] || { echo "validators: no folder $dir" >&2; exit 2; }
dir=$(cd "$dir" && pwd)
tools=${MDX_STEMS_VALIDATORS:-$root/../shared/tools/validators}
clap="$dir/MDX Stems.clap"
vst3="$dir/MDX Stems.vst3"
[ -f "$clap" ] && [ -d "$vst3" ] || { echo "validators: no MDX Stems.clap and MDX Stems.vst3 in $dir" >&2; exit 2; }
[ -d "$tools" ] || { echo "validators: no validators in $tools" >&2; exit 2; }
case $(head -c 4 "$clap" | od -An -tx1 | tr -d ' \n') in
  7f454c46) os=linux ;;
  4d5a*) os=windows ;;
  *) echo "validators: $clap is neither ELF nor PE" >&2; exit 2 ;;
esac

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/home" "$scratch/models" "$scratch/uvr" "$scratch/audio-separator" "$scratch/logs"
export HOME="$scratch/home" MDX_STEMS_MODELS="$scratch/models" MDX_STEMS_UVR_DIR="$scratch/uvr" \
  AUDIO_SEPARATOR_MODEL_DIR="$scratch/audio-separator"
# No XDG folder of the caller either (the data dir is where the default models folder would be).
unset XDG_DATA_HOME XDG_CONFIG_HOME XDG_CACHE_HOME

failed=0
n=0
expect=""

# run VALIDATOR BUNDLE MODEL PARSER -- COMMAND...: runs COMMAND with its output in a log;
# PARSER reads the log, prints a line per plugin ("<plugin>: <counts>") and last the tool's own
# total ("total: ..."), and returns 1 on a failure that the exit code does not show. Prints
# those lines, the wall time and the verdict; on a failure also the log's failure lines and end.
run() {
  local validator=$1 bundle=$2 model=$3 parser=$4; shift 5
  n=$((n + 1))
  local log="$scratch/logs/$n.log" t0=$SECONDS rc=0 prc=0 lines verdict=ok
  "$@" >"$log" 2>&1 || rc=$?
  sed -i 's/\x1b\[[0-9;]*m//g' "$log" # clap-validator colours its output even into a file
  # clap-validator runs each test in a child process of its own; under Wine, creating that
  # process can fail (ERROR_INTERNAL_ERROR, 1359) before any plugin code runs, and the
  # validator then panics ("Failed to spawn a child process ... This is a bug in the
  # validator"). That is the host machine failing, not the plugin: run the validator once
  # more, and say so.
  if [ "$rc" != 0 ] && grep -q 'Failed to spawn a child process' "$log"; then
    echo "$validator on $bundle ($model): the validator could not start its test process (Wine); running it again"
    rc=0
    "$@" >"$log" 2>&1 || rc=$?
    sed -i 's/\x1b\[[0-9;]*m//g' "$log"
  fi
  lines=$("$parser" "$log") || prc=$?
  # The separator the plugin logged on activation, when a run is about one ($expect).
  if [ -n "$expect" ] && ! grep -q -E "activate: .*$expect" "$log"; then
    lines="$lines (the plugin never activated with $expect)"; prc=1
  fi
  if [ "$rc" != 0 ] || [ "$prc" != 0 ]; then verdict="FAILED (exit code $rc)"; failed=1; fi
  while IFS= read -r l; do
    case $l in
      total:*) printf '%-24s %-20s %-26s %s; %s s; %s\n' "$validator" "$bundle" "$model" "$l" "$((SECONDS - t0))" "$verdict" ;;
      *) printf '%-24s %-20s %-26s %s\n' "$validator" "$bundle" "$model" "$l" ;;
    esac
  done <<<"$lines"
  if [ "$verdict" != ok ]; then
    echo "---- $validator on $bundle ($model): the log's failure lines, then its last 40 lines"
    grep -n -E 'FAILED|CRASHED|\[Failed\]|!!!|[Ee]rror|panicked|[Aa]bort' "$log" | head -40 || true
    tail -n 40 "$log"
    echo "----"
  fi
}

# clap-validator: a tree per plugin library and per plugin ("┌─ Plugin" then its id, then
# "│ └── PASSED" etc. per test) and "N tests run, P passed, F failed, W warnings, S skipped".
clap_counts() {
  awk '
    function flush() { if (id != "") printf "%s: %d passed, %d failed, %d skipped, %d warnings\n", id, c["PASSED"], c["FAILED"] + c["CRASHED"], c["SKIPPED"], c["WARNING"]; delete c; id = "" }
    /^┌─ Plugin Library/ { flush(); lib = 1; next }
    /^┌─ Plugin$/ { flush(); getid = 1; next }
    lib && /^│ / { id = "library"; lib = 0; next }
    getid && /^│ / { id = substr($0, length("│ ") + 1); getid = 0; next }
    /^│ └── [A-Z]+/ { split($0, f, " "); c[f[3]]++; next }
    /^[0-9]+ tests run/ { flush(); total = $0 }
    END { flush(); if (total == "") { print "total: no summary"; exit 1 } print "total: " total; if (total !~ / 0 failed/) exit 1 }
  ' "$1"
}

# The VST3 validator: "TestSuite : <plugin name>" per plugin (then its sub-suites), a
# "[Succeeded]" or "[Failed]" per test, and "Result: P tests passed, F tests failed".
vst3_counts() {
  awk '
    function flush() { if (p != "") printf "%s: %d passed, %d failed\n", p, ok, bad; ok = bad = 0; p = "" }
    /^  Class Info [0-9]+:/ { cls = 1; next }
    cls && /^\tname = / { sub(/^\tname = /, ""); names[$0] = 1; cls = 0; next }
    /^TestSuite : / { s = substr($0, 13); if (s in names) { flush(); p = s } next }
    /^\[Succeeded\]/ { ok++ } /^\[Failed\]/ { bad++ }
    /^Result: [0-9]+ tests passed, [0-9]+ tests failed/ { flush(); total = substr($0, 9) }
    END { flush(); if (total == "") { print "total: no summary"; exit 1 } print "total: " total; if (total !~ / 0 tests failed/) exit 1 }
  ' "$1"
}

# pluginval: per plugin ("Testing plugin: VST3-<name>-<ids>") a "Starting tests in: pluginval /
# <group>..." per group of tests, a "FAILED!!  N tests failed, ..." line for a group with failed
# checks ("!!! Test N failed: ..." each), "*** FAILED..." on a crash or timeout. The exit code is
# its verdict (0: every test passed).
pluginval_counts() {
  awk '
    function flush() { if (p != "") printf "%s: %d test groups, %d failed, %d warnings\n", p, t, f, w; t = f = w = 0; p = "" }
    /^Num plugins found: / { found = $4 }
    /^Testing plugin: / { flush(); p = substr($0, 17); sub(/^VST3-/, "", p); sub(/-[0-9a-f]+-[0-9a-f]+$/, "", p); plugins++; next }
    p != "" && /^Starting tests in: pluginval \// { t++; groups++ }
    /^FAILED!! / { f++; fails++ }
    /^\*\*\* FAILED/ { crash = crash " " $0 }
    /^!!! WARN/ { w++ }
    END {
      flush()
      printf "total: %d plugins found, %d tested, %d test groups run, %d failed%s\n", found, plugins, groups, fails, crash
      if (fails > 0 || crash != "" || plugins == 0 || plugins != found) exit 1
    }
  ' "$1"
}

# The model runs: a small MDX23C fixture in the models folder. With the model setting empty, the
# plugin uses the first ready model found (here: the checkpoint, its `<name>.yaml` beside it);
# with no model at all, its default built-in separator.
fixture=small_batchnorm_elu_target
install_model() {
  local src="$root/tests/fixtures/mdx23c/$fixture"
  cp "$src/model.ckpt" "$scratch/models/$fixture.ckpt"
  cp "$src/config.yaml" "$scratch/models/$fixture.yaml"
}

echo "validators on $dir ($os bundles), from $tools"
if [ "$os" = linux ]; then
  # Every validator twice: no model installed, then the fixture.
  for model in built-in "$fixture"; do
    if [ "$model" = built-in ]; then expect="builtin:"; else install_model; expect=$fixture; fi
    run "clap-validator" "MDX Stems.clap" "$model" clap_counts -- "$tools/linux/clap-validator" validate "$clap"
    run "VST3 validator" "MDX Stems.vst3" "$model" vst3_counts -- "$tools/linux/validator" "$vst3"
    run "VST3 validator -e" "MDX Stems.vst3" "$model" vst3_counts -- "$tools/linux/validator" -e "$vst3"
    # pluginval validates every plugin of the bundle in one run; its editor tests need an X
    # server.
    run "pluginval -10" "MDX Stems.vst3" "$model" pluginval_counts -- \
      xvfb-run -a "$tools/linux/pluginval" --strictness-level 10 --validate "$vst3"
  done
else
  wine=${MDX_STEMS_WINE:-/usr/lib/wine/wine64}
  # No Mono/Gecko install prompts, no debug chatter. The prefix: Wine's default, in the scratch
  # HOME (a fresh one, so no user's %APPDATA% models either), unless WINEPREFIX names one.
  export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
  trap '[ -n "${WINEPREFIX:-}" ] || WINEPREFIX="$HOME/.wine" "$(dirname "$wine")/wineserver" -k 2>/dev/null; rm -rf "$scratch"' EXIT
  # The model folders as Windows paths (Wine's Z: drive is the root of the file system).
  export MDX_STEMS_MODELS="Z:$MDX_STEMS_MODELS" MDX_STEMS_UVR_DIR="Z:$MDX_STEMS_UVR_DIR" \
    AUDIO_SEPARATOR_MODEL_DIR="Z:$AUDIO_SEPARATOR_MODEL_DIR"
  # The validators and the ProcessPrng stand-in in one folder (the DLL beside the executable is
  # found first, by the validators and by our plugin DLL that they load).
  bin="$scratch/wine-bin"
  mkdir -p "$bin"
  cp "$tools/windows/clap-validator.exe" "$tools/windows/validator.exe" "$bin/"
  bash "$root/tests/wine/shim.sh" "$bin"
  # Create the prefix now and wait for Wine's services to settle, so the first validator does
  # not start its processes while wineboot is still setting the prefix up.
  "$wine" wineboot --init >/dev/null 2>&1 || true
  "$(dirname "$wine")/wineserver" -w 2>/dev/null || true
  # Under Xvfb: without an X display Wine cannot create windows, and the VST3 wrapper's event
  # loop (a hidden message window, nice-plug's event_loop/windows.rs) fails to start and aborts
  # the host. Relative paths from the bundle folder: Wine maps the current folder to a drive.
  cd "$dir"
  expect="builtin:"
  run "clap-validator (Wine)" "MDX Stems.clap (win)" built-in clap_counts -- \
    xvfb-run -a "$wine" "$bin/clap-validator.exe" validate "MDX Stems.clap"
  run "VST3 validator (Wine)" "MDX Stems.vst3 (win)" built-in vst3_counts -- \
    xvfb-run -a "$wine" "$bin/validator.exe" "MDX Stems.vst3"
  run "VST3 validator -e (Wine)" "MDX Stems.vst3 (win)" built-in vst3_counts -- \
    xvfb-run -a "$wine" "$bin/validator.exe" -e "MDX Stems.vst3"
  # With the model: the same three runs (this build, CI's `ci-cross` profile with dependencies
  # at opt-level 1, separates slowly: the VST3 validator's runs take about a minute each).
  install_model
  expect=$fixture
  run "clap-validator (Wine)" "MDX Stems.clap (win)" "$fixture" clap_counts -- \
    xvfb-run -a "$wine" "$bin/clap-validator.exe" validate "MDX Stems.clap"
  run "VST3 validator (Wine)" "MDX Stems.vst3 (win)" "$fixture" vst3_counts -- \
    xvfb-run -a "$wine" "$bin/validator.exe" "MDX Stems.vst3"
  run "VST3 validator -e (Wine)" "MDX Stems.vst3 (win)" "$fixture" vst3_counts -- \
    xvfb-run -a "$wine" "$bin/validator.exe" -e "MDX Stems.vst3"
fi
[ "$failed" = 0 ] || { echo "validators: FAILED (the logs above)"; exit 1; }
echo "validators: all passed"
