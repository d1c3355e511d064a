/* libFuzzer target: sarco_picture_read. The first byte picks the file name's suffix (the reader goes
 * by content, and by name only for damaged bytes), the rest is the file. */
#include "fuzz.h"

static const char *const suffixes[] = {".png", ".jpg", ".nii", ".nii.gz"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    sarco_picture *pic = NULL;
    sarco_status s = sarco_picture_read(fuzz_ctx(), fuzz_file(data + 1, size - 1, suffixes[data[0] & 3]), &pic);
    fuzz_check_status(s);
    if ((s == SARCO_OK) != (pic != NULL)) abort();
    if (pic) {
        volatile float acc = 0;
        size_t n = (size_t)pic->width * (size_t)pic->height * (size_t)pic->channels;
        for (size_t i = 0; i < n; i++) acc += pic->data[i];
        (void)acc;
    }
    sarco_picture_free(pic);
    return 0;
}
