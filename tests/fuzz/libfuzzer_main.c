/* One fuzz target as a libFuzzer binary: built with -DFUZZ_TARGET=fuzz_<name> (tests/fuzz/run.sh). */
#include "tests/fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return FUZZ_TARGET(data, size); }
