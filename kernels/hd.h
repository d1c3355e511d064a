/* SARCO_HD: functions shared by the CPU backend (plain C, static inline) and the CUDA kernels
 * (__host__ __device__ under nvcc), so the CPU tests exercise the GPU's arithmetic. */
#ifndef SARCO_KERNELS_HD_H
#define SARCO_KERNELS_HD_H

#if defined(__CUDACC__)
#define SARCO_HD static inline __host__ __device__
#else
#define SARCO_HD static inline
#endif

#include <math.h>
#include <stdint.h>

#endif
