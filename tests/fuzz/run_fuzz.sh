#!/usr/bin/env bash
# fuzz/smoke: build the libFuzzer targets with clang in a separate build tree
# and run each for a bounded time. Fails on a crash; 77 (skip) without clang.
# Usage: run_fuzz.sh SOURCE_DIR FUZZ_BUILD_DIR
#   OTALAB_FUZZ_SECONDS  seconds per target (default 20)
set -uo pipefail
src=${1:?source dir}
bld=${2:?fuzz build dir}
secs=${OTALAB_FUZZ_SECONDS:-20}

cc=$(command -v clang || command -v clang-14 || true)
if [ -z "$cc" ]; then
  echo "fuzz/smoke: SKIP: clang not found (scripts/deps.sh installs clang and libclang-rt-14-dev)"
  exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' >"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" 2>"$probe/err"; then
  echo "fuzz/smoke: SKIP: $cc cannot link -fsanitize=fuzzer (libFuzzer runtime missing: install libclang-rt-14-dev)"
  sed 's/^/  /' "$probe/err" | head -5
  exit 77
fi

# Build only the fuzz targets; the sanitizer options of the calling ASan build
# do not apply to the clang tree.
if ! cmake -S "$src" -B "$bld" -DCMAKE_C_COMPILER="$cc" -DOTALAB_FUZZ=ON \
     -DOTALAB_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
     -DCMAKE_C_FLAGS=-Wno-unknown-warning-option >"$bld.configure.log" 2>&1; then
  cat "$bld.configure.log"
  echo "fuzz/smoke: FAIL: configure"
  exit 1
fi
if ! cmake --build "$bld" --target fuzz_all -j2 >"$bld.build.log" 2>&1; then
  tail -40 "$bld.build.log"
  echo "fuzz/smoke: FAIL: build"
  exit 1
fi
read -r -a targets <"$bld/tests/fuzz/targets.txt"
seeds="$bld/seeds"
"$bld/tests/fuzz/fuzz_seeds" "$src/fixtures/vectors/coap.json" \
  "$src/fixtures/catalog/electron.json" "$seeds" || {
  echo "fuzz/smoke: FAIL: seeds"
  exit 1
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
printf '%-14s %8s %10s %10s %6s %s\n' target seconds execs execs/s cov result
for t in "${targets[@]}"; do
  case $t in
    fuzz_coap) sd=coap ;; fuzz_module) sd=module ;; fuzz_describe) sd=describe ;; *) sd=msg ;;
  esac
  work="$bld/corpus/$t"
  art="$bld/artifacts/$t"
  mkdir -p "$work" "$art"
  log="$bld/$t.log"
  start=$(date +%s)
  "$bld/tests/fuzz/$t" -max_total_time="$secs" -print_final_stats=1 \
    -error_exitcode=1 -timeout=10 -rss_limit_mb=1024 \
    -artifact_prefix="$art/" "$work" "$seeds/$sd" >"$log" 2>&1
  rc=$?
  end=$(date +%s)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  if [ $rc -eq 0 ]; then res=ok; else res="CRASH (rc $rc)"; status=1; fi
  printf '%-14s %8s %10s %10s %6s %s\n' "$t" "$((end - start))" "${execs:-?}" \
    "${rate:-?}" "${cov:-?}" "$res"
  if [ $rc -ne 0 ]; then
    grep -E 'ERROR|SUMMARY|==[0-9]+==|#[0-9]+ 0x|Test unit written' "$log" | head -30
    echo "  full log: $log; reproducer in $art/"
  fi
done
[ $status -eq 0 ] && echo "fuzz/smoke: PASS" || echo "fuzz/smoke: FAIL"
exit $status
