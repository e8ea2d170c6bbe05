/* tn_m7.h: kernels specialised per layer for the Cortex-M7, for the steps of a generated model.c
 * (tinyopt/deploy/kernels_m7/ writes one function per step calling one of them with the
 * layer's constants). Shared parts and conventions: tn_m7_core.h. */
#ifndef TN_M7_H
#define TN_M7_H

#include "tn_m7_gemm.h"
#include "tn_m7_dw.h"
#include "tn_m7_pool.h"    /* max / average pool steps */
#include "tn_m7_add.h"

#endif

/* The sub-byte kernels (issue 29), left out where model.c defines TN_M7_INT8_ONLY around its
 * include (no step of the model takes one): at -O2 their switches of unrolled assembly forms
 * preprocess to ~6 MB, about 0.2 s of every Cortex-M7 build of the model (session 21). Outside
 * TN_M7_H's guard, so that a unit including tn_m7.h for an 8-bit model first and for a
 * sub-byte one later still gets them (each has its own guard). */
#ifndef TN_M7_INT8_ONLY
#include "tn_m7_sub.h"     /* sub-byte dense / pointwise / conv */
#include "tn_m7_subconv.h" /* ... on tn_m7_conv's lanes */
#include "tn_m7_subfc.h"   /* ... dense, no scratch */
#endif
