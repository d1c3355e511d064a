/* libFuzzer target: sarco_labels_read (label maps: integral, 0..65535). The first byte picks the file
 * name's suffix, the rest is the file. */
#include "fuzz.h"

static const char *const suffixes[] = {".nii", ".nii.gz", ".png", ".jpg"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint16_t *labels = NULL;
    sarco_image *geom = NULL;
    sarco_status s = sarco_labels_read(fuzz_ctx(), fuzz_file(data + 1, size - 1, suffixes[data[0] & 3]), &labels, &geom);
    fuzz_check_status(s);
    if ((s == SARCO_OK) != (labels != NULL && geom != NULL)) abort();
    if (labels) {
        volatile unsigned acc = 0;
        size_t n = (size_t)geom->dims[0] * (size_t)geom->dims[1] * (size_t)geom->dims[2];
        for (size_t i = 0; i < n; i++) acc += labels[i];
        (void)acc;
    }
    sarco_labels_free(labels);
    sarco_image_free(geom);
    return 0;
}
