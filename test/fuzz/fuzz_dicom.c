/* libFuzzer target for the DICOM reader (lib/io/dicom.c, lib/io/dicom_gdcm.cpp): the input bytes as a
 * file (the reader takes paths), behind a valid preamble and "DICM" so that every input reaches the
 * structure walk and GDCM, read as an image and as a picture. A status is fine; a crash, an ASan/UBSan
 * report or a leak is a bug. Build and run: `make fuzz-dicom` (clang; FUZZ_SECONDS, default 120),
 * seeds from test/data/dicom (the preamble stripped). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sarco/sarco.h"

static sarco_context *ctx;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.threads = 1;
    o.memory_limit = (size_t)32 << 20; /* inputs are at most 64 KiB; keeps RSS under the fuzzer limit */
    if (sarco_context_create(&o, &ctx) != SARCO_OK) abort();
    snprintf(path, sizeof path, "/tmp/fuzz_dicom_%d.dcm", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    static const uint8_t pre[132] = {[128] = 'D', [129] = 'I', [130] = 'C', [131] = 'M'};
    int skip = size >= 132 && memcmp(data + 128, "DICM", 4) == 0; /* a whole file as a seed */
    if (!skip) fwrite(pre, 1, sizeof pre, f);
    fwrite(data, 1, size, f);
    fclose(f);
    sarco_image *img = NULL;
    if (sarco_image_read(ctx, path, &img) == SARCO_OK && (!img || !img->data || !img->dicom)) abort();
    sarco_image_free(img);
    sarco_picture *pic = NULL;
    if (sarco_picture_read(ctx, path, &pic) == SARCO_OK && (!pic || !pic->data)) abort();
    sarco_picture_free(pic);
    return 0;
}
