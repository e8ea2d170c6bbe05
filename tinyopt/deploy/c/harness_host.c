/* harness_host.c: run an exported model on images from a file (host build).
 * usage: model_host IN_FILE N_IMAGES OUT_FILE
 * IN_FILE holds N_IMAGES packed inputs of MODEL_IN_BYTES each; OUT_FILE receives N_IMAGES packed
 * outputs of MODEL_OUT_BYTES each. The harness keeps its own buffers, so model_run copies the
 * input into the arena and the output out of it (the MCU harness uses the in-arena buffers). */
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

static uint8_t in_buf[MODEL_IN_BYTES];
static uint8_t out_buf[MODEL_OUT_BYTES];

int main(int argc, char **argv)
{
    FILE *fin, *fout;
    long n, i;
    if (argc != 4) {
        fprintf(stderr, "usage: %s IN_FILE N_IMAGES OUT_FILE\n", argv[0]);
        return 2;
    }
    n = strtol(argv[2], NULL, 10);
    fin = fopen(argv[1], "rb");
    fout = fopen(argv[3], "wb");
    if (fin == NULL || fout == NULL || n < 0) {
        fprintf(stderr, "cannot open %s or %s (or bad count %s)\n", argv[1], argv[3], argv[2]);
        return 2;
    }
    for (i = 0; i < n; i++) {
        if (fread(in_buf, 1, MODEL_IN_BYTES, fin) != MODEL_IN_BYTES) {
            fprintf(stderr, "%s: short read at image %ld\n", argv[1], i);
            return 3;
        }
        if (model_run(in_buf, out_buf) != 0) return 4;
        if (fwrite(out_buf, 1, MODEL_OUT_BYTES, fout) != MODEL_OUT_BYTES) return 5;
    }
    fclose(fin);
    return fclose(fout) == 0 ? 0 : 5;
}
