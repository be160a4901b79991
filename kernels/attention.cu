// Causal self-attention: the forward for T new tokens against the KV cache,
// and the backward for packed targets (explanations).
#include <stdio.h>

#include "common.cuh"

// ==== forward ========================================================================
//
// One block per (tile of QT query rows, head). The block keeps the tile's
// queries and its full rows of scores in shared memory (QT x (pos0 + T)
// floats: 64 KiB for QT = 16 and 1024 keys), so the probabilities are
// computed exactly once, normalised in a second pass over shared memory (no
// online rescaling), and written out when captured. Keys and values stream
// through shared memory in tiles of KT rows (padded to hd + 1 floats, so that
// lanes reading different keys hit different banks), read once per block and
// reused by the QT rows; KT = 256 / QT (at least 64), so that a decode step
// (QT = 1) still gives every thread a key. Every sum has a fixed order (a thread's loop, or a
// warp butterfly), so the result is deterministic.
//   scores:  thread p -> (row r, key j) pairs of the tile, dot product over hd
//   softmax: warp per row (max, exp, sum by butterfly)
//   output:  thread -> up to 8 (row, dim) outputs, sum over the row's keys in order

enum { ATT_BLOCK = 256, ATT_KT_MIN = 64, ATT_MAX_OUT = 8, ATT_QT = 16 };

static size_t att_smem_bytes(int QT, int KT, int hd, int ld)
{
    return sizeof(float) * ((size_t)QT * hd + (size_t)KT * (hd + 1) + (size_t)QT * ld + (size_t)QT);
}

// kcache/vcache (n_ctx, C) rows pos0 .. pos0 + T - 1 = the k and v parts of qkv (T, 3C)
__global__ void kv_append_kernel(float *__restrict__ kc, float *__restrict__ vc, const float *__restrict__ qkv,
                                 int pos0, int T, int C)
{
    const int64_t total = (int64_t)T * C, C3 = 3 * (int64_t)C;
    ECC_GRID_STRIDE(idx, total)
    {
        int64_t t = idx / C, i = idx - t * C;
        kc[((int64_t)pos0 + t) * C + i] = qkv[t * C3 + C + i];
        vc[((int64_t)pos0 + t) * C + i] = qkv[t * C3 + 2 * C + i];
    }
}

// grid: (ceil(T / QT), NH); block: ATT_BLOCK; dynamic shared memory att_smem_bytes(QT, KT, hd, pos0 + T).
// out (T, C): head h's columns h*hd .. ; att: row t of head h at att + h*att_hs + t*att_rs,
// pos0 + t + 1 probabilities then zeros up to pos0 + T.
__global__ void __launch_bounds__(ATT_BLOCK)
    attention_kernel(float *__restrict__ out, float *__restrict__ att, int64_t att_hs, int att_rs,
                     const float *__restrict__ qkv, const float *__restrict__ kc, const float *__restrict__ vc,
                     int pos0, int T, int C, int hd, int QT, int KT, float scale)
{
    ECC_DYNAMIC_SHARED(float, smem);
    const int h = blockIdx.y, t0 = blockIdx.x * QT;
    if (t0 >= T)
        return;
    const int rows = min(QT, T - t0);
    const int ld = pos0 + T;              // score row stride: every key of the call
    const int kend = pos0 + t0 + rows;    // keys the tile's last row sees
    const int hd1 = hd + 1;
    const int64_t C3 = 3 * (int64_t)C, hoff = (int64_t)h * hd;
    float *q_s = smem, *kv_s = q_s + (size_t)QT * hd, *s_s = kv_s + (size_t)KT * hd1,
          *inv_s = s_s + (size_t)QT * ld;

    for (int e = threadIdx.x; e < rows * hd; e += blockDim.x) {
        int r = e / hd, d = e - r * hd;
        q_s[e] = qkv[(int64_t)(t0 + r) * C3 + hoff + d];
    }
    // scores s = scale * q . k for keys 0 .. pos0 + t (the causal limit of row t)
    for (int k0 = 0; k0 < kend; k0 += KT) {
        const int kn = min(KT, kend - k0);
        __syncthreads(); // q_s loaded; the previous key tile consumed
        for (int e = threadIdx.x; e < kn * hd; e += blockDim.x) {
            int j = e / hd, d = e - j * hd;
            kv_s[j * hd1 + d] = kc[(int64_t)(k0 + j) * C + hoff + d];
        }
        __syncthreads();
        for (int p = threadIdx.x; p < rows * kn; p += blockDim.x) {
            int r = p / kn, j = p - r * kn, key = k0 + j;
            if (key > pos0 + t0 + r)
                continue;
            const float *q = q_s + r * hd, *k = kv_s + j * hd1;
            float s = 0.0f;
            for (int d = 0; d < hd; d++)
                s += q[d] * k[d];
            s_s[(size_t)r * ld + key] = s * scale;
        }
    }
    __syncthreads();
    // softmax numerators and 1 / sum, warp per row
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int r = warp; r < rows; r += nw) {
        const int n = pos0 + t0 + r + 1;
        float *s = s_s + (size_t)r * ld;
        float mx = -INFINITY;
        for (int j = lane; j < n; j += 32)
            mx = fmaxf(mx, s[j]);
        mx = warp_max_f(mx);
        float sum = 0.0f;
        for (int j = lane; j < n; j += 32) {
            float e = expf(s[j] - mx);
            s[j] = e;
            sum += e;
        }
        sum = warp_sum_f(sum);
        if (lane == 0)
            inv_s[r] = 1.0f / sum;
    }
    // out = (sum_j e_j v_j) / sum, values streamed like the keys
    float acc[ATT_MAX_OUT];
#pragma unroll
    for (int o = 0; o < ATT_MAX_OUT; o++)
        acc[o] = 0.0f;
    for (int k0 = 0; k0 < kend; k0 += KT) {
        const int kn = min(KT, kend - k0);
        __syncthreads(); // softmax done; the previous value tile consumed
        for (int e = threadIdx.x; e < kn * hd; e += blockDim.x) {
            int j = e / hd, d = e - j * hd;
            kv_s[j * hd1 + d] = vc[(int64_t)(k0 + j) * C + hoff + d];
        }
        __syncthreads();
#pragma unroll
        for (int o = 0; o < ATT_MAX_OUT; o++) {
            const int e = threadIdx.x + o * blockDim.x;
            if (e < rows * hd) {
                const int r = e / hd, d = e - r * hd;
                const int jn = min(kn, pos0 + t0 + r + 1 - k0); // this tile's keys inside row r's limit
                const float *p = s_s + (size_t)r * ld + k0, *v = kv_s + d;
                float a = acc[o];
                for (int j = 0; j < jn; j++)
                    a += p[j] * v[j * hd1];
                acc[o] = a;
            }
        }
    }
#pragma unroll
    for (int o = 0; o < ATT_MAX_OUT; o++) {
        const int e = threadIdx.x + o * blockDim.x;
        if (e < rows * hd) {
            const int r = e / hd, d = e - r * hd;
            out[(int64_t)(t0 + r) * C + hoff + d] = acc[o] * inv_s[r];
        }
    }
    if (att) {
        for (int r = warp; r < rows; r += nw) {
            const int n = pos0 + t0 + r + 1;
            const float inv = inv_s[r], *s = s_s + (size_t)r * ld;
            float *a = att + (int64_t)h * att_hs + (int64_t)(t0 + r) * att_rs;
            for (int j = lane; j < ld; j += 32)
                a[j] = j < n ? s[j] * inv : 0.0f;
        }
    }
}

static void cu_attention(ecc_backend *be, float *out, float *att, int64_t att_head_stride, int att_row_stride,
                         const float *qkv, float *kcache, float *vcache, int pos0, int T, int C, int NH, float scale)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || T <= 0 || C <= 0 || NH <= 0)
        return;
    const int hd = C / NH, ld = pos0 + T;
    if (hd < 1 || hd > ATT_MAX_OUT * ATT_BLOCK) {
        cu_record(ctx, ECC_ERR_UNSUPPORTED, __FILE__, __LINE__, "attention: head width %d is outside [1, %d]", hd,
                  ATT_MAX_OUT * ATT_BLOCK);
        return;
    }
    ECC_LAUNCH(kv_append_kernel, cu_grid(ctx, (int64_t)T * C, 256), 256, 0, ctx->stream)(
        kcache, vcache, qkv, pos0, T, C);
    if (!CU_LAUNCHED(ctx, "kv_append_kernel"))
        return;
    // the largest query tile whose score rows fit in shared memory, then the
    // largest key tile (256 / QT keys, at least 64) that still fits
    int QT = T < ATT_QT ? T : ATT_QT;
    if (QT > ATT_MAX_OUT * ATT_BLOCK / hd)
        QT = ATT_MAX_OUT * ATT_BLOCK / hd;
    while (QT > 1 && att_smem_bytes(QT, ATT_KT_MIN, hd, ld) > (size_t)ctx->smem_optin)
        QT = (QT + 1) / 2;
    int KT = ATT_BLOCK / QT > ATT_KT_MIN ? ATT_BLOCK / QT : ATT_KT_MIN;
    while (KT > ATT_KT_MIN && att_smem_bytes(QT, KT, hd, ld) > (size_t)ctx->smem_optin)
        KT /= 2;
    const size_t smem = att_smem_bytes(QT, KT, hd, ld);
    if (smem > (size_t)ctx->smem_optin) {
        cu_record(ctx, ECC_ERR_UNSUPPORTED, __FILE__, __LINE__,
                  "attention: %d keys of head width %d need %zu bytes of shared memory per block; this GPU allows %d",
                  ld, hd, smem, ctx->smem_optin);
        return;
    }
    dim3 grid((unsigned)((T + QT - 1) / QT), (unsigned)NH);
    ECC_LAUNCH(attention_kernel, grid, ATT_BLOCK, smem, ctx->stream)(
        out, att, att_head_stride, att_row_stride, qkv, kcache, vcache, pos0, T, C, hd, QT, KT, scale);
    CU_LAUNCHED(ctx, "attention_kernel");
}

// ==== backward =======================================================================
//
// Per target j (n = tg_n[j] rows) and head h, with P the saved probabilities
// (n x n, lower triangular) and dO the head's slice of datty (n x hd):
//   dP = dO V^T;  dS = P * (dP - rowsum(P * dP));
//   dQ = scale dS K;  dK = scale dS^T Q;  dV = P^T dO.
// The four products run on cuBLAS as strided-batched GEMMs over a sub-batch
// of (target, head) pairs (ecc_attn_plan, common.cuh) padded to the same m
// rows: a pack kernel copies dO, Q, K, V into zero-padded (m x hd) blocks of
// the reserved tiles, the softmax-backward kernel turns dP into dS and copies
// P (zeros outside the causal triangle and below row n), and an unpack kernel
// writes dQ, dK, dV back to the packed rows. The padding is exact: padded rows
// of dO are zero, so their dP, dS and their contribution to dK and dV vanish,
// and padded columns of P and dS are zero. The planner reads the n_j from the
// host's copy the orchestration passes (h_tg_n), so no call waits for the
// device. cuBLAS is deterministic on one stream, and the row sums run in a
// fixed order, so the result is deterministic.
//
// Tiles of a sub-batch of np pairs (ldS = round4(m), ldH = round4(hd)):
//   S (np, m, ldS) | P (np, m, ldS) | dO, Q, K, V (np, m, ldH) each
// dQ is written over V, dK over K (read by dQ before), dV over Q (read by dK before).

// one thread per (pair, row, dim) of the padded blocks
__global__ void attn_bwd_pack_kernel(float *__restrict__ dOp, float *__restrict__ Qp, float *__restrict__ Kp,
                                     float *__restrict__ Vp, const float *__restrict__ datty,
                                     const float *__restrict__ qkv, const int32_t *__restrict__ tg_seq,
                                     const int32_t *__restrict__ tg_n, const int64_t *__restrict__ tg_off, int64_t g0,
                                     int64_t np, int m, int ldH, int NH, int hd, int T, int C)
{
    const int64_t total = np * m * hd, C3 = 3 * (int64_t)C;
    ECC_GRID_STRIDE(idx, total)
    {
        const int64_t d = idx % hd, pi = idx / hd, i = pi % m, p = pi / m, g = g0 + p;
        const int64_t j = g / NH, h = g - j * NH, o = pi * ldH + d;
        if (i < tg_n[j]) {
            const int64_t q = ((int64_t)tg_seq[j] * T + i) * C3 + h * hd + d;
            dOp[o] = datty[(tg_off[j] + i) * C + h * hd + d];
            Qp[o] = qkv[q];
            Kp[o] = qkv[q + C];
            Vp[o] = qkv[q + 2 * C];
        } else {
            dOp[o] = Qp[o] = Kp[o] = Vp[o] = 0.0f;
        }
    }
}

// One warp per (pair, row i) of S: D = sum_{k <= i} P[i,k] dP[i,k] (double,
// butterfly), dS[i,k] = P[i,k] (dP[i,k] - D) for k <= i, else 0; P copied
// alongside. Rows i >= n are zero in both.
__global__ void attn_bwd_softmax_kernel(float *__restrict__ S, float *__restrict__ Pp, const float *__restrict__ att,
                                        const int32_t *__restrict__ tg_seq, const int32_t *__restrict__ tg_n,
                                        int64_t g0, int64_t np, int m, int ldS, int NH, int T)
{
    const int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    const int64_t rows = np * m;
    for (int64_t w = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); w < rows; w += (int64_t)gridDim.x * wpb) {
        const int64_t p = w / m, i = w - p * m, g = g0 + p, j = g / NH, h = g - j * NH;
        float *s = S + w * ldS, *pp = Pp + w * ldS;
        if (i >= tg_n[j]) { // warp-uniform
            for (int k = lane; k < m; k += 32)
                s[k] = pp[k] = 0.0f;
            continue;
        }
        const float *P = att + (((int64_t)tg_seq[j] * NH + h) * T + i) * T;
        double D = 0;
        for (int k = lane; k <= i; k += 32)
            D += (double)P[k] * s[k];
        D = warp_sum_d(D);
        const float Df = (float)D;
        for (int k = lane; k < m; k += 32) {
            if (k <= i) {
                const float pk = P[k];
                s[k] = pk * (s[k] - Df);
                pp[k] = pk;
            } else {
                s[k] = pp[k] = 0.0f;
            }
        }
    }
}

// one thread per (pair, row < n, dim): dqkv rows off + i, columns q | k | v of head h
__global__ void attn_bwd_unpack_kernel(float *__restrict__ dqkv, const float *__restrict__ dQ,
                                       const float *__restrict__ dK, const float *__restrict__ dV,
                                       const int32_t *__restrict__ tg_n, const int64_t *__restrict__ tg_off,
                                       int64_t g0, int64_t np, int m, int ldH, int NH, int hd, int C)
{
    const int64_t total = np * m * hd, C3 = 3 * (int64_t)C;
    ECC_GRID_STRIDE(idx, total)
    {
        const int64_t d = idx % hd, pi = idx / hd, i = pi % m, p = pi / m, g = g0 + p;
        const int64_t j = g / NH, h = g - j * NH;
        if (i < tg_n[j]) {
            const int64_t o = pi * ldH + d, r = (tg_off[j] + i) * C3 + h * hd + d;
            dqkv[r] = dQ[o];
            dqkv[r + C] = dK[o];
            dqkv[r + 2 * C] = dV[o];
        }
    }
}

static void attn_bwd_subbatch(cuda_ctx *ctx, float *dqkv, const float *datty, const float *qkv, const float *att,
                              const int32_t *tg_seq, const int32_t *tg_n, const int64_t *tg_off, int64_t g0,
                              int64_t np, int m, int T, int C, int NH, float scale)
{
    const int hd = C / NH;
    const int ldS = (int)ecc_round4(m), ldH = (int)ecc_round4(hd);
    const long long sS = (long long)m * ldS, sH = (long long)m * ldH;
    float *S = ctx->tiles, *Pp = S + np * sS, *dOp = Pp + np * sS, *Qp = dOp + np * sH, *Kp = Qp + np * sH,
          *Vp = Kp + np * sH;
    const int64_t elems = np * m * hd;
    ECC_LAUNCH(attn_bwd_pack_kernel, cu_grid(ctx, elems, 256), 256, 0, ctx->stream)(
        dOp, Qp, Kp, Vp, datty, qkv, tg_seq, tg_n, tg_off, g0, np, m, ldH, NH, hd, T, C);
    if (!CU_LAUNCHED(ctx, "attn_bwd_pack_kernel"))
        return;
    const int batch = (int)np;
    cu_gemm_rm(ctx, 0, 1, m, m, hd, 1.0f, dOp, ldH, sH, Vp, ldH, sH, 0.0f, S, ldS, sS, batch); // dP = dO V^T
    ECC_LAUNCH(attn_bwd_softmax_kernel, cu_grid(ctx, np * m * 32, 256), 256, 0, ctx->stream)(
        S, Pp, att, tg_seq, tg_n, g0, np, m, ldS, NH, T);
    if (!CU_LAUNCHED(ctx, "attn_bwd_softmax_kernel"))
        return;
    cu_gemm_rm(ctx, 0, 0, m, hd, m, scale, S, ldS, sS, Kp, ldH, sH, 0.0f, Vp, ldH, sH, batch);  // dQ = scale dS K
    cu_gemm_rm(ctx, 1, 0, m, hd, m, scale, S, ldS, sS, Qp, ldH, sH, 0.0f, Kp, ldH, sH, batch);  // dK = scale dS^T Q
    cu_gemm_rm(ctx, 1, 0, m, hd, m, 1.0f, Pp, ldS, sS, dOp, ldH, sH, 0.0f, Qp, ldH, sH, batch); // dV = P^T dO
    if (!cu_ok(ctx))
        return;
    ECC_LAUNCH(attn_bwd_unpack_kernel, cu_grid(ctx, elems, 256), 256, 0, ctx->stream)(
        dqkv, Vp, Kp, Qp, tg_n, tg_off, g0, np, m, ldH, NH, hd, C);
    CU_LAUNCHED(ctx, "attn_bwd_unpack_kernel");
}

static void cu_attention_backward(ecc_backend *be, float *dqkv, const float *datty, const float *qkv, const float *att,
                                  const int32_t *tg_seq, const int32_t *tg_n, const int32_t *h_tg_n,
                                  const int64_t *tg_off, int J, int T, int C, int NH, float scale)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || J <= 0 || C <= 0 || NH <= 0)
        return;
    const int hd = C / NH;
    const int32_t *n = h_tg_n; // the row counts of the targets, for the padding plan (host memory)
    int nmax = 0;
    for (int j = 0; j < J; j++) {
        if (n[j] < 0 || n[j] > T) {
            cu_record(ctx, ECC_ERR_INPUT, __FILE__, __LINE__,
                      "attention_backward: target %d has %d rows, outside [0, T = %d]", j, n[j], T);
            return;
        }
        nmax = n[j] > nmax ? n[j] : nmax;
    }
    // at least one pair of the longest target (be->reserve normally holds many)
    size_t cap_bytes = ctx->tiles_floats * sizeof(float);
    if (!cu_device_reserve(ctx, (void **)&ctx->tiles, &cap_bytes,
                           (size_t)ecc_attn_pair_floats(nmax, hd) * sizeof(float), "the attention-gradient tiles"))
        return;
    ctx->tiles_floats = cap_bytes / sizeof(float);
    const int64_t total = (int64_t)J * NH;
    for (int64_t g0 = 0; g0 < total && cu_ok(ctx);) {
        int m = 0;
        int64_t np = ecc_attn_plan(n, J, NH, hd, (int64_t)ctx->tiles_floats, g0, &m);
        if (np < 1) {
            cu_record(ctx, ECC_ERR_DEVICE, __FILE__, __LINE__, "attention_backward: internal: empty sub-batch");
            return;
        }
        if (m > 0)
            attn_bwd_subbatch(ctx, dqkv, datty, qkv, att, tg_seq, tg_n, tg_off, g0, np, m, T, C, NH, scale);
        g0 += np;
    }
}

void ecc_cuda_register_attention(ecc_backend *be)
{
    cuda_ctx *ctx = ctx_of(be);
    be->attention = cu_attention;
    be->attention_backward = cu_attention_backward;
    // allow the score rows of long contexts (up to the device's opt-in limit)
    CUDA_CHECK(ctx, cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         ctx->smem_optin));
}
