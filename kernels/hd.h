/* SARCO_HD: functions shared by the CPU backend (plain C, static inline) and the CUDA kernels
 * (__host__ __device__ under nvcc), so the CPU tests exercise the GPU's arithmetic. */
#ifndef SARCO_KERNELS_HD_H
#define SARCO_KERNELS_HD_H

#if defined(__CUDACC__)
#define SARCO_HD static inline __host__ __device__
#else
#define SARCO_HD static inline
#endif

/* Before a CPU loop whose iterations are independent (per-channel work along a row): asks for SIMD
 * code whatever the optimisation level's cost model says; nothing under nvcc. */
#if defined(_OPENMP) && !defined(__CUDACC__)
#define SARCO_HD_SIMD _Pragma("omp simd")
#else
#define SARCO_HD_SIMD
#endif

#include <math.h>
#include <stdint.h>

#endif
