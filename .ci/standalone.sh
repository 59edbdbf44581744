#!/usr/bin/env bash
# The repository stands alone (issue #21): nothing in it reads a folder beside the checkout or a
# path of one machine. Fails, listing the lines, when a tracked or untracked (not ignored) file
# - mentions `../shared`, `shared_dir` or `MDX_STEMS_SHARED` (test data lives in tests/fixtures,
#   read through `mdx_stems::testing::fixture_dir`), except the prebuilt public validators
#   (`../shared/tools/validators`: tools, not test data), which .ci/, the workflows and the
#   documentation (docs/, README.md) may name;
# - holds an absolute path into a machine's checkout or home folder (the second pattern below).
#   .ci/standalone.sh
set -euo pipefail
cd "$(dirname "$0")/.."

validators='\.\./shared/tools/validators'
# Every file git would commit, but this script (it names the patterns).
grep_repo() { git grep -n -I --untracked -E "$1" -- . ':!.ci/standalone.sh' || true; }

bad=$(
  grep_repo '\.\./shared|shared_dir|MDX_STEMS_SHARED' | while IFS= read -r line; do
    file=${line%%:*}
    case $file in
      .ci/*|.github/*|docs/*|README.md)
        # Allowed: the validators' folder. Anything else on the line still fails.
        rest=$(printf '%s' "${line#*:*:}" | sed -E "s#$validators##g")
        printf '%s' "$rest" | grep -qE '\.\./shared|shared_dir|MDX_STEMS_SHARED' && echo "$line" ;;
      *) echo "$line" ;;
    esac
  done
  grep_repo '(^|[^A-Za-z0-9_.~-])/(work|home)/'
)
if [ -n "$bad" ]; then
  echo "standalone: these lines read outside the repository or name a machine's path:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "standalone: nothing reads ../shared (but the validators) or names a machine's path"
