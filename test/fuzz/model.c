/* libFuzzer target: sarco_model_load on a .safetensors file: the safetensors header, the sarco.config
 * JSON in its metadata, the architecture's kwargs validation and the weights' names/shapes against the
 * architecture. A model that loads is asked its output shape for a small input (shape code, no forward). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sarco_model *m = NULL;
    sarco_status s = sarco_model_load(fuzz_ctx(), fuzz_file(data, size, ".safetensors"), &m);
    fuzz_check_status(s);
    if ((s == SARCO_OK) != (m != NULL)) abort();
    if (m) {
        if (!sarco_model_arch(m) || !sarco_model_config_json(m)) abort();
        int64_t in3[5] = {1, 1, 32, 32, 32}, in2[4] = {1, 1, 64, 64}, out[5];
        fuzz_check_status(sarco_model_output_shape(fuzz_ctx(), m, 5, in3, out));
        fuzz_check_status(sarco_model_output_shape(fuzz_ctx(), m, 4, in2, out));
        sarco_model_free(m);
    }
    return 0;
}
