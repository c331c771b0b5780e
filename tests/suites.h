/* Every Check suite of the project; tests/main.c runs them all. Tests that need ../shared skip
 * with a message when it is absent; GPU tests report themselves as skipped without a device. */
#ifndef TESTS_SUITES_H
#define TESTS_SUITES_H

#include <check.h>

Suite *tensor_suite(void);
Suite *sgemm_suite(void);
Suite *autograd_suite(void);
Suite *ops_grad_suite(void);
Suite *model_suite(void);
Suite *detect_suite(void);
Suite *eval_suite(void);
Suite *train_suite(void);
Suite *cascade_suite(void);
Suite *cuda_suite(void);
Suite *fuzz_suite(void);
Suite *onnx_suite(void);
Suite *distributed_suite(void);

/* Path of a file in ../shared (or $RETINA_SHARED), NULL when absent; buf holds the result. */
const char *shared_path(const char *rel, char *buf, size_t len);

#endif
