/* cuDNN 9 status arithmetic, plain C so the CPU tests check it (test_cuda_hd.c): a status is a category
 * (thousands: 1000 NOT_INITIALIZED and sub-library loading, 2000 BAD_PARAM, 3000 NOT_SUPPORTED, 4000
 * INTERNAL_ERROR, 5000 EXECUTION_FAILED) plus a detail (3002 NOT_SUPPORTED_SHAPE, 2003
 * BAD_PARAM_MISALIGNED_POINTER). lib/cuda/cudnn_conv.cu asserts at compile time that this is
 * cudnn_graph.h's CUDNN_STATUS_CATEGORY. */
#ifndef SARCO_CUDA_DNN_STATUS_H
#define SARCO_CUDA_DNN_STATUS_H

#ifdef __cplusplus
#define SARCO_DNN_CONSTEXPR constexpr /* usable in cudnn_conv.cu's static_assert */
#else
#define SARCO_DNN_CONSTEXPR
#endif

static inline SARCO_DNN_CONSTEXPR int sarco_dnn_category(int status) { return status / 1000 * 1000; }

/* Only a NOT_SUPPORTED-category status may fall back to another algorithm, the unfused path or the
 * direct kernel; anything else (bad parameters, a sub-library that did not load, an execution failure)
 * is an error. */
static inline SARCO_DNN_CONSTEXPR int sarco_dnn_may_fall_back(int status) { return sarco_dnn_category(status) == 3000; }

#endif
