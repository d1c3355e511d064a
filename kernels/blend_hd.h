/* Where one element of a window's prediction lands in the blend accumulator: the thread -> element
 * map of the CUDA blend kernel, kept here so the CPU tests check it against plain nested loops.
 * The arithmetic itself (weighted add, Gaussian map, divide + argmax) is kernels/window_hd.h's.
 *
 * Layouts, as lib/pipeline/window.c keeps them: prediction y (C, R0, R1, R2), weight map
 * w (R0, R1, R2), accumulator acc (C, P0, P1, P2), weight sums cnt (P0, P1, P2); the window
 * starts at st[] inside the padded grid P (st[a] + R[a] <= P[a]). 2-D: R2 = P2 = 1, st2 = 0. */
#ifndef SARCO_KERNELS_BLEND_HD_H
#define SARCO_KERNELS_BLEND_HD_H

#include "hd.h"

typedef struct sarco_blend_geom {
    int64_t c;
    int64_t roi[3], padded[3], st[3];
} sarco_blend_geom;

/* Element i of y (C, R0, R1, R2): its index in acc, and (through *vox, *tile) its voxel in cnt and in w. */
SARCO_HD int64_t sarco_blend_index(const sarco_blend_geom *g, int64_t i, int64_t *vox, int64_t *tile) {
    int64_t k = i % g->roi[2], t = i / g->roi[2];
    int64_t j = t % g->roi[1];
    t /= g->roi[1];
    int64_t r = t % g->roi[0], ch = t / g->roi[0];
    *tile = (r * g->roi[1] + j) * g->roi[2] + k;
    *vox = ((g->st[0] + r) * g->padded[1] + g->st[1] + j) * g->padded[2] + g->st[2] + k;
    return ch * g->padded[0] * g->padded[1] * g->padded[2] + *vox;
}

/* Labels as stored: argmax results (< 65536) in uint8 when bits is 8 (caller checks C <= 256), else uint16. */
SARCO_HD void sarco_label_store(void *labels, int bits, int64_t i, uint16_t v) {
    if (bits == 8)
        ((uint8_t *)labels)[i] = (uint8_t)v;
    else
        ((uint16_t *)labels)[i] = v;
}

#endif
