#include "tests/reference_targets.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void reference_targets_read(const char *manifest, ReferenceTargets *t)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(manifest, "rb");
    ck_assert_ptr_nonnull(f);
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *p = strstr(text, "\"train_targets\"");
    ck_assert_ptr_nonnull(p);
    p = strchr(strstr(p, "\"value\""), '[');
    float rows[REF_MAX_IMAGES][REF_MAX_FACES][15];
    int depth = 0, image = -1, face = -1, k = 0;
    for (; *p; p++) {
        if (*p == '[') {
            depth++;
            if (depth == 2) image++, face = -1;
            if (depth == 3) face++, k = 0;
            ck_assert_int_lt(image, REF_MAX_IMAGES);
            ck_assert_int_lt(face, REF_MAX_FACES);
        } else if (*p == ']') {
            if (depth == 3) t->counts[image] = face + 1;
            if (--depth == 0) break;
        } else if (depth == 3 && (*p == '-' || (*p >= '0' && *p <= '9'))) {
            char *end;
            ck_assert_int_lt(k, 15);
            rows[image][face][k++] = strtof(p, &end);
            p = end - 1;
        }
    }
    t->n_images = image + 1;
    for (int b = 0; b < t->n_images; b++) {
        for (int i = 0; i < t->counts[b]; i++) {
            memcpy(t->boxes[b][i], rows[b][i], 4 * sizeof(float));
            memcpy(t->landmarks[b][i], rows[b][i] + 4, 10 * sizeof(float));
            t->labels[b][i] = 1;
            t->has_landmarks[b][i] = rows[b][i][14] > 0;
        }
        t->targets[b] = (ImageTargets){t->counts[b], &t->boxes[b][0][0], &t->landmarks[b][0][0], t->labels[b],
                                       t->has_landmarks[b]};
    }
}
