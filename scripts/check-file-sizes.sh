#!/usr/bin/env bash
# File-size budget: no source file (*.rs *.wgsl *.js *.mjs *.ts *.py *.sh, tracked or new and
# not ignored; tests/data/ excluded) may exceed LIMIT lines, except those listed in
# scripts/file-size-allowlist.txt, each with the most lines it may have. The list is debt: a
# listed file may not grow past its max, and a file that has been split below the limit, or is
# gone, must leave the list, so the list only shrinks.
#
#   scripts/check-file-sizes.sh            check (exit 1 on any breach; `make check-sizes`)
#   scripts/check-file-sizes.sh --update   rewrite the allow-list from the current tree
#                                          (every file over the limit, at its current size)
#
# Needs only bash, git and awk.
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=600
ALLOW=scripts/file-size-allowlist.txt
RULE="source files stay at or under $LIMIT lines"

# "<lines>\t<path>" for every source file over the limit.
over_limit() {
  git ls-files -z --cached --others --exclude-standard -- \
    '*.rs' '*.wgsl' '*.js' '*.mjs' '*.ts' '*.py' '*.sh' ':(exclude)tests/data/' |
    while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
    xargs -0 -r awk -v limit="$LIMIT" '
      FNR == 1 && NR > 1 { if (n > limit) printf "%d\t%s\n", n, name }
      { name = FILENAME; n = FNR }
      END { if (NR > 0 && n > limit) printf "%d\t%s\n", n, name }' |
    sort -t$'\t' -k2
}

if [ "${1:-}" = "--update" ]; then
  {
    echo "# Files allowed over the ${LIMIT}-line budget of scripts/check-file-sizes.sh: \"path max_lines\"."
    echo "# Every entry is a debt to pay off by splitting the file. The max is the file's size when it"
    echo "# was listed, so it cannot grow; once a file is under the budget (or gone) its entry must go."
    echo "# Regenerate with: scripts/check-file-sizes.sh --update"
    over_limit | while IFS=$'\t' read -r n f; do printf '%s %s\n' "$f" "$n"; done
  } >"$ALLOW"
  echo "check-file-sizes: wrote $ALLOW ($(grep -vc '^#' "$ALLOW" || true) entries)"
  exit 0
fi
[ $# -eq 0 ] || { echo "usage: $0 [--update]" >&2; exit 2; }

declare -A max=()
if [ -f "$ALLOW" ]; then
  while read -r path m rest; do
    [ -z "${path:-}" ] || [ "${path:0:1}" = "#" ] && continue
    if [ -n "${max[$path]:-}" ] || ! [[ "${m:-}" =~ ^[0-9]+$ ]] || [ -n "${rest:-}" ]; then
      echo "check-file-sizes: $ALLOW: bad or duplicate entry: $path ${m:-} ${rest:-}" >&2
      exit 1
    fi
    max[$path]=$m
  done <"$ALLOW"
fi

fail=0
declare -A seen=()
while IFS=$'\t' read -r n f; do
  seen[$f]=1
  if [ -z "${max[$f]:-}" ]; then
    echo "check-file-sizes: $f: $n lines, over the budget ($RULE): split it" >&2
    fail=1
  elif [ "$n" -gt "${max[$f]}" ]; then
    echo "check-file-sizes: $f: $n lines, more than its allow-listed ${max[$f]} (allow-listed files may not grow): split it or move code out" >&2
    fail=1
  elif [ "$n" -lt "${max[$f]}" ]; then
    echo "check-file-sizes: note: $f shrank to $n lines (allow-listed ${max[$f]}): lower its max in $ALLOW"
  fi
done < <(over_limit)

for f in "${!max[@]}"; do
  [ -n "${seen[$f]:-}" ] && continue
  if [ -e "$f" ]; then
    echo "check-file-sizes: $f is allow-listed but now within the budget ($RULE): remove its line from $ALLOW, the debt is paid" >&2
  else
    echo "check-file-sizes: $f is allow-listed but no longer exists: remove its line from $ALLOW" >&2
  fi
  fail=1
done

if [ "$fail" -ne 0 ]; then
  echo "check-file-sizes: FAILED ($RULE; exceptions in $ALLOW)" >&2
  exit 1
fi
echo "check-file-sizes: ok (${#max[@]} allow-listed files over $LIMIT lines, none grew)"
