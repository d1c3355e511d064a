/* libFuzzer target: sarco_image_read on a .png file (docs/reliability.md). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_read_image(data, size, ".png");
    return 0;
}
