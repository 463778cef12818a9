#!/bin/bash
# Every committed fuzz input (tests/fuzz/corpus: seeds and the inputs
# that once crashed a parser) runs once through its libFuzzer target
# with ASan and UBSan, so a regression fails make check.  make fuzz runs
# the targets for longer.
source "$(dirname "$0")/lib/functions.sh"
cd "$TESTS_DIR/.."
ls build-fuzz/fuzz-* >/dev/null 2>&1 ||
	skip "no fuzz targets built (clang missing?)"
tests/fuzz/run --replay || fail "a fuzz input fails"
echo ok
