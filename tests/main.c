#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tests/suites.h"

const char *shared_path(const char *rel, char *buf, size_t len)
{
    const char *root = getenv("RETINA_SHARED");
    if (!root) root = "../shared";
    snprintf(buf, len, "%s/%s", root, rel);
    struct stat st;
    return stat(buf, &st) == 0 ? buf : NULL;
}

int main(int argc, char **argv)
{
    /* Line-buffered, so what a forked test printed before failing is not lost. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    Suite *(*suites[])(void) = {tensor_suite, sgemm_suite, autograd_suite, ops_grad_suite, model_suite, detect_suite, eval_suite, train_suite, cascade_suite, distributed_suite, onnx_suite, fuzz_suite, cuda_suite};
    SRunner *sr = srunner_create(NULL);
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++) srunner_add_suite(sr, suites[i]());
    /* Optional filter: run_tests SUITE [TEST] (same as CK_RUN_SUITE / CK_RUN_CASE). */
    if (argc > 1) setenv("CK_RUN_SUITE", argv[1], 1);
    if (argc > 2) setenv("CK_RUN_CASE", argv[2], 1);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
