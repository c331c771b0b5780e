#!/bin/sh
# Fuzzing with clang's libFuzzer (+ ASan + UBSan): builds the library and one binary per target of
# tests/fuzz/fuzz_targets.c into build-fuzz/, seeds each corpus from tests/data and ../shared, and
# runs each target for SECONDS. A crash is written to tests/fuzz/regressions/<target>/, which the
# normal suite replays: commit it with the fix.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]   (make fuzz: 600 s each)
#   tests/fuzz/run.sh --smoke                 (make test: 10 s each; skipped without clang/libFuzzer)
set -u
cd "$(dirname "$0")/../.."
smoke=0
if [ "${1:-}" = "--smoke" ]; then smoke=1; shift; set -- 10 "$@"; fi
seconds=${1:-600}
[ $# -gt 0 ] && shift
targets=${*:-"matfile safetensors checkpoint labels predictions image"}
CLANG=${FUZZ_CC:-clang}
if ! command -v "$CLANG" >/dev/null 2>&1 ||
   ! echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){return 0;}' |
     "$CLANG" -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1; then
    echo "fuzz: SKIPPED (no clang with libFuzzer; Debian: apt-get install clang)"
    exit 0
fi
B=build-fuzz
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
make -s BUILD=$B CC="$CLANG" CUDA=0 OPT="-O1 -g -fsanitize=fuzzer-no-link $SAN" LDSAN="$SAN" $B/libretina.a || exit 1
LIBS="-ljpeg -lpng -lwebp -lexif -lz -lm -pthread"
shared=${RETINA_SHARED:-../shared}
status=0
for t in $targets; do
    "$CLANG" -O1 -g -I. $SAN -fsanitize=fuzzer -DFUZZ_TARGET=fuzz_$t tests/fuzz/libfuzzer_main.c \
        tests/fuzz/fuzz_targets.c $B/libretina.a $LIBS -o $B/fuzz_$t || exit 1
    corpus=$B/corpus/$t
    mkdir -p "$corpus" tests/fuzz/regressions/$t
    case $t in
    matfile) seeds="$shared/widerface/ground_truth/wider_easy_val.mat" ;;
    safetensors) seeds="tests/data/tiny.safetensors" ;;
    checkpoint) seeds="tests/data/*.pt" ;;
    labels) seeds="$shared/data/tiny/train/label.txt $B/seed_bbx_gt.txt" ;;
    predictions) seeds="$(ls $shared/widerface/predictions_mnet025/19--Couple/*.txt 2>/dev/null | head -3)" ;;
    image) seeds="$B/seed.jpg $B/seed.png" ;;
    esac
    # small seeds derived from the shared data where the originals are large
    [ -f $B/seed_bbx_gt.txt ] || head -20 "$shared/widerface/WIDER_train/train_bbx_gt.txt" > $B/seed_bbx_gt.txt 2>/dev/null
    [ -f $B/seed.jpg ] || head -c 4000 "$shared/reference/retinaface_mnet025/test.jpg" > $B/seed.jpg 2>/dev/null
    [ -f $B/seed.png ] || printf '\211PNG\r\n\032\n' > $B/seed.png
    for s in $seeds; do [ -f "$s" ] && cp "$s" "$corpus/" 2>/dev/null; done
    echo "== fuzz $t: $seconds s"
    $B/fuzz_$t -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix=tests/fuzz/regressions/$t/ "$corpus" > $B/fuzz_$t.log 2>&1
    rc=$?
    # executions, rate, coverage and corpus, from libFuzzer's own report
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' $B/fuzz_$t.log | awk '{print $2}')
    cov=$(grep -o 'cov: [0-9]*' $B/fuzz_$t.log | tail -1 | awk '{print $2}')
    echo "   runs ${runs:-?} ($(( ${runs:-0} / (seconds > 0 ? seconds : 1) ))/s), coverage ${cov:-?} edges," \
         "corpus $(ls $corpus | wc -l) files"
    if [ $rc -ne 0 ]; then
        echo "   FOUND A CRASH (log $B/fuzz_$t.log; input saved under tests/fuzz/regressions/$t/)"
        grep -m3 -E "ERROR|SUMMARY" $B/fuzz_$t.log
        status=1
    fi
done
exit $status
