/* tn_m7.h: kernels specialised per layer for the Cortex-M7, for the steps of a generated model.c
 * (tinyopt/deploy/kernels_m7/ writes one function per step calling one of them with the
 * layer's constants). Shared parts and conventions: tn_m7_core.h. */
#ifndef TN_M7_H
#define TN_M7_H

#include "tn_m7_gemm.h"
#include "tn_m7_dw.h"
#include "tn_m7_pool.h"    /* max / average pool steps */
#include "tn_m7_add.h"
#include "tn_m7_sub.h"     /* sub-byte dense / pointwise / conv (issue 29) */
#include "tn_m7_subconv.h" /* ... on tn_m7_conv's lanes */
#include "tn_m7_subfc.h"   /* ... dense, no scratch */

#endif
