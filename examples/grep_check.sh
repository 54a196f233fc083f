#!/usr/bin/env bash
# keel-grep prints what GNU `grep -F` prints (C locale), with the same exit
# status, on generated files: mixed-case words, empty lines, a last line
# without a newline, a line longer than keel-grep's read buffer, and stdin.
# usage: grep_check.sh KEEL_GREP WORKDIR
set -u
kg=$1
dir=$2/grep_check
mkdir -p "$dir"
export LC_ALL=C

RANDOM=42
words=(error Error ERROR warn warning timeout TimeOut request GET POST index queue
       "" a ab abab eRRor_x "user=alice" "x:y" "tab	here" caf$'\xc3\xa9' CAF$'\xc3\x89')
gen() {  # gen FILE LINES
  : > "$1"
  for ((i = 0; i < $2; i++)); do
    n=$((RANDOM % 9))
    line=""
    for ((j = 0; j < n; j++)); do line+="${words[RANDOM % ${#words[@]}]} "; done
    printf '%s\n' "$line" >> "$1"
  done
}
gen "$dir/a.txt" 3000
gen "$dir/b.txt" 500
printf 'last line error without newline' >> "$dir/b.txt"
: > "$dir/empty.txt"
{ printf 'short error\n'; head -c 1500000 /dev/zero | tr '\0' 'q'; printf 'error in a long line\nend\n'; } > "$dir/long.txt"

fail=0
check() {  # check ARGS... -- GREP_PATTERN_ARGS -- KEEL_PATTERN_ARGS -- FILES
  local opts=() gp=() kp=() files=()
  while [ "$1" != -- ]; do opts+=("$1"); shift; done; shift
  while [ "$1" != -- ]; do gp+=("$1"); shift; done; shift
  while [ "$1" != -- ]; do kp+=("$1"); shift; done; shift
  files=("$@")
  grep -F "${opts[@]}" "${gp[@]}" "${files[@]}" > "$dir/want" 2> /dev/null; local ws=$?
  "$kg" "${opts[@]}" "${kp[@]}" "${files[@]}" > "$dir/got" 2> /dev/null; local gs=$?
  if ! cmp -s "$dir/want" "$dir/got" || [ $ws -ne $gs ]; then
    echo "MISMATCH: ${opts[*]} | ${kp[*]} | ${files[*]} (status grep $ws, keel-grep $gs)"
    diff "$dir/want" "$dir/got" | head -5
    fail=1
  fi
}
A=$dir/a.txt B=$dir/b.txt L=$dir/long.txt E=$dir/empty.txt
for opts in "" "-i" "-n" "-c" "-i -n" "-c -i"; do
  # shellcheck disable=SC2086
  set -- $opts
  check "$@" -- -e error -- -F error -- "$A"
  check "$@" -- -e Error -- -F Error -- "$A" "$B"
  check "$@" -- -e TimeOut -e GET -e "x:y" -- -F TimeOut -F GET -F "x:y" -- "$A" "$B" "$L"
  check "$@" -- -e absent_word -- -F absent_word -- "$A"
  check "$@" -- -e "" -- -F "" -- "$B"
  check "$@" -- -e ab -e abab -e a -- -F ab -F abab -F a -- "$A"
  check "$@" -- -e "$(printf 'warn\nPOST')" -- -F "$(printf 'warn\nPOST')" -- "$A"
  check "$@" -- -e "caf$(printf '\xc3\xa9')" -- -F "caf$(printf '\xc3\xa9')" -- "$A"
  check "$@" -- -e error -- -F error -- "$L" "$E"
  check "$@" -- -e qqqqerror -- -F qqqqerror -- "$L"
done
# Standard input, a missing file (status 2 with the rest still searched).
grep -F -n error < "$A" > "$dir/want"; "$kg" -n -F error < "$A" > "$dir/got"
cmp -s "$dir/want" "$dir/got" || { echo "MISMATCH: stdin"; fail=1; }
grep -F -n -i ERROR < "$L" > "$dir/want"; cat "$L" | "$kg" -n -i -F ERROR > "$dir/got"
cmp -s "$dir/want" "$dir/got" || { echo "MISMATCH: stdin, a line longer than the buffer"; fail=1; }
"$kg" -F error "$dir/no-such-file" "$A" > "$dir/got" 2> /dev/null; s=$?
grep -F error "$dir/no-such-file" "$A" > "$dir/want" 2> /dev/null; w=$?
{ cmp -s "$dir/want" "$dir/got" && [ $s -eq $w ]; } || { echo "MISMATCH: missing file ($w vs $s)"; fail=1; }

if [ $fail -eq 0 ]; then echo "grep check passed"; else exit 1; fi
