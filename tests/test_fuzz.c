/* The fuzz targets without libFuzzer: every file under tests/fuzz/regressions/<target>/ (inputs that
 * once crashed a parser) and the seed files go through the target, so a fixed crash stays fixed in
 * the normal and the sanitizer suites. Plus a sweep of truncations and byte flips of each seed, a
 * deterministic miniature of what make fuzz does. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/rng.h"
#include "tests/fuzz/fuzz_targets.h"
#include "tests/suites.h"

static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (data && fread(data, 1, (size_t)n, f) != (size_t)n) free(data), data = NULL;
    fclose(f);
    *size = data ? (size_t)n : 0;
    return data;
}

static FuzzTarget target(const char *name)
{
    for (int i = 0; i < fuzz_target_count; i++)
        if (!strcmp(fuzz_targets[i].name, name)) return fuzz_targets[i].fn;
    return NULL;
}

START_TEST(regressions_replay)
{
    if (access("tests/fuzz/regressions", R_OK)) {
        printf("SKIP fuzz regressions: not run from the repository root\n");
        return;
    }
    int replayed = 0;
    for (int t = 0; t < fuzz_target_count; t++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fuzz/regressions/%s", fuzz_targets[t].name);
        DIR *d = opendir(dir);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char path[600];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            size_t n;
            uint8_t *data = read_all(path, &n);
            ck_assert_ptr_nonnull(data);
            fuzz_targets[t].fn(data, n);
            free(data);
            replayed++;
        }
        closedir(d);
    }
    printf("  fuzz regressions: %d inputs replayed\n", replayed);
}
END_TEST

/* Each seed, cut at 64 places and with 64 random byte flips, through its parser. */
START_TEST(seeds_cut_and_flipped)
{
    static const struct {
        const char *target, *seed;
    } seeds[] = {{"checkpoint", "tests/data/ok_crafted.pt"},     {"checkpoint", "tests/data/zip_state_dict.pt"},
                 {"safetensors", "tests/data/tiny.safetensors"}, {"checkpoint", "tests/data/bad_global.pt"}};
    if (access("tests/data/tiny.safetensors", R_OK)) {
        printf("SKIP fuzz seeds: not run from the repository root\n");
        return;
    }
    Rng rng;
    rng_seed(&rng, 18, 0);
    int runs = 0;
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        size_t n;
        uint8_t *data = read_all(seeds[s].seed, &n);
        ck_assert_ptr_nonnull(data);
        FuzzTarget fn = target(seeds[s].target);
        ck_assert_ptr_nonnull(fn);
        fn(data, n);
        for (int k = 1; k <= 64; k++, runs++) fn(data, n * (size_t)k / 65);
        uint8_t *copy = malloc(n + 1);
        for (int k = 0; k < 64 && n; k++, runs++) {
            memcpy(copy, data, n);
            for (int f = 0; f < 4; f++) copy[rng_below(&rng, (uint32_t)n)] = (uint8_t)rng_u32(&rng);
            fn(copy, n);
        }
        free(copy);
        free(data);
    }
    printf("  fuzz seeds: %d cut or flipped inputs, no crash\n", runs);
}
END_TEST

Suite *fuzz_suite(void)
{
    Suite *s = suite_create("fuzz");
    TCase *tc = tcase_create("replay");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, regressions_replay);
    tcase_add_test(tc, seeds_cut_and_flipped);
    suite_add_tcase(s, tc);
    return s;
}
