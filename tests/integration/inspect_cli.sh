#!/usr/bin/env bash
# otalab inspect / mkapp exit codes and defect reports on real-format modules:
# a valid app, a truncated copy and a bit-flipped copy (PROTOCOL.md 4.3-4.5).
# Usage: inspect_cli.sh PATH/TO/otalab
set -u
otalab=${1:?usage: inspect_cli.sh OTALAB}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # check NAME WANT_RC GOT_RC
  if [ "$2" -ne "$3" ]; then
    echo "FAIL: $1: exit $3, want $2"
    fails=$((fails + 1))
  else
    echo "ok: $1 (exit $3)"
  fi
}
expect_text() { # expect_text NAME FILE PATTERN
  if grep -q -- "$3" "$2"; then echo "ok: $1"; else
    echo "FAIL: $1: no '$3' in output:"; cat "$2"; fails=$((fails + 1)); fi
}

# A valid app needing s/2 >= 108; a bare module version avoids depending on
# the catalogue's content.
"$otalab" mkapp --requires 108 --size 8K --out "$tmp/app.bin" >/dev/null
check "mkapp" 0 $?
[ "$(stat -c %s "$tmp/app.bin")" -eq 8192 ] || { echo "FAIL: app size"; fails=$((fails + 1)); }

"$otalab" inspect "$tmp/app.bin" >"$tmp/ok.txt" 2>/dev/null
check "inspect valid app" 0 $?
expect_text "valid app shows s/2 dependency" "$tmp/ok.txt" "s/2 >= 108"
expect_text "valid app is valid" "$tmp/ok.txt" "status:       valid"

head -c 8000 "$tmp/app.bin" >"$tmp/trunc.bin"
"$otalab" inspect "$tmp/trunc.bin" >"$tmp/trunc.txt" 2>/dev/null
check "inspect truncated" 1 $?
expect_text "truncation reported" "$tmp/trunc.txt" "truncated: file has 8000 bytes, header says 8192"

cp "$tmp/app.bin" "$tmp/flip.bin"
printf '\x5a' | dd of="$tmp/flip.bin" bs=1 seek=4000 conv=notrunc 2>/dev/null
"$otalab" inspect "$tmp/flip.bin" >"$tmp/flip.txt" 2>/dev/null
check "inspect bit-flipped" 1 $?
expect_text "CRC mismatch reported" "$tmp/flip.txt" "CRC-32 mismatch: stored 0x"
expect_text "SHA mismatch reported" "$tmp/flip.txt" "SHA-256 mismatch"

# mixed: one bad file makes the whole run fail; --json lists every file
"$otalab" inspect --json "$tmp/app.bin" "$tmp/flip.bin" >"$tmp/out.json" 2>/dev/null
check "inspect --json mixed" 1 $?
if command -v python3 >/dev/null; then
  python3 - "$tmp/out.json" <<'PY' || fails=$((fails + 1))
import json, sys
a = json.load(open(sys.argv[1]))
assert len(a) == 2 and a[0]["valid"] and not a[1]["valid"], a
assert a[0]["dependencies"][0]["module"] == "s/2" and a[0]["dependencies"][0]["version"] == 108
assert {d["defect"] for d in a[1]["defects"]} == {"crc", "sha256"}, a[1]["defects"]
print("ok: --json content")
PY
fi

"$otalab" inspect >/dev/null 2>&1
check "inspect without files" 2 $?
"$otalab" inspect --bogus x >/dev/null 2>&1
check "inspect unknown option" 2 $?
"$otalab" inspect --help >/dev/null 2>&1
check "inspect --help" 0 $?
"$otalab" inspect "$tmp/does-not-exist.bin" >/dev/null 2>&1
check "inspect missing file" 1 $?
"$otalab" mkapp --out "$tmp/x.bin" >/dev/null 2>&1
check "mkapp without --requires" 2 $?

[ "$fails" -eq 0 ] && echo "inspect_cli: all checks passed"
exit $((fails > 0))
