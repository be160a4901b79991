// A CPU emulation of the parts of CUDA, cuBLAS and CUB that the kernels use,
// so that the CUDA backend and its tests (tests/gpu) run on a machine
// without a GPU: configure with -DECCOLO_CUDA=OFF -DECCOLO_CUDA_EMULATE=ON.
// It checks the kernels' logic, indexing, launch configurations, shared
// memory sizes and barriers, not their speed, and nothing about the real
// hardware (memory model, math library ulps, cuBLAS's own algorithms).
//
// Each block runs alone; its threads are coroutines (ucontext) on one OS
// thread, switched only at __syncthreads and at warp primitives (which are
// barriers of the warp's 32 lanes), in a shuffled order (seed:
// ECC_EMU_SEED), so a missing barrier shows up as a wrong result. Static
// __shared__ variables become function statics (blocks never overlap); the
// dynamic shared memory is a fresh allocation per launch, filled with 0xFF
// bytes (NaN). Launches check the block size, grid limits and the dynamic
// shared memory against the opt-in limit set by cudaFuncSetAttribute. A
// barrier that not every live thread reaches is reported as a deadlock.
// cuBLAS products run on OpenBLAS (column-major, argument checks as cuBLAS's;
// TF32 / BF16 compute types round the inputs); CUB's BlockScan and
// DeviceRadixSort are plain loops (a stable sort).
#ifndef ECC_CUDA_EMU_H
#define ECC_CUDA_EMU_H

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define ECC_EMU_ASAN 1
#endif

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

// ---- runtime types -------------------------------------------------------------------

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorLaunchFailure = 719,
} cudaError_t;
typedef struct ecc_emu_stream *cudaStream_t;
typedef struct ecc_emu_event *cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaDeviceAttr {
    cudaDevAttrMultiProcessorCount,
    cudaDevAttrMaxGridDimX,
    cudaDevAttrMaxSharedMemoryPerBlockOptin,
    cudaDevAttrComputeCapabilityMajor,
    cudaDevAttrComputeCapabilityMinor,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
struct cudaFuncAttributes {
    int maxThreadsPerBlock;
};
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor, multiProcessorCount;
};
#define cudaStreamNonBlocking 1u
#define cudaEventDisableTiming 2u

namespace ecc_emu {

enum { SMEM_DEFAULT = 48 << 10, SMEM_OPTIN = 232448, SM_COUNT = 1, STACK = 256 << 10, MAX_THREADS = 1024 };
enum { RUNNABLE, WAITING, DONE };

struct Fiber {
    ucontext_t ctx;
    unsigned tid;
    int state, wait_kind; // wait_kind: -1 = the block barrier, w >= 0 = warp w's barrier
    void *stack;
};

struct State {
    dim3 grid, block, bidx;
    unsigned char *smem = nullptr;
    std::vector<Fiber> fibers;
    int cur = -1;
    ucontext_t sched;
    int bar_count = 0, bar_live = 0;
    std::vector<int> w_count, w_live;
    std::vector<unsigned long long> w_slot;
    std::function<void()> body;
    std::mt19937 rng{1};
    bool seeded = false;
    cudaError_t last_error = cudaSuccess;
    const char *kernel = "";
    std::map<const void *, int> smem_limit;
    void *stacks[MAX_THREADS] = {};
#ifdef ECC_EMU_ASAN
    void *fake_stack = nullptr;
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
#endif
};

inline State &st()
{
    static State s;
    return s;
}

inline dim3 thread_idx() { return dim3(st().fibers[st().cur].tid, 0, 0); }

// switch from the running fiber to the scheduler, and back when resumed
inline void to_scheduler(Fiber &f)
{
#ifdef ECC_EMU_ASAN
    State &s = st();
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, s.sched_bottom, s.sched_size);
    swapcontext(&f.ctx, &s.sched);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    swapcontext(&f.ctx, &st().sched);
#endif
}

inline void release(int kind)
{
    State &s = st();
    for (Fiber &f : s.fibers)
        if (f.state == WAITING && f.wait_kind == kind)
            f.state = RUNNABLE;
}

// kind -1: __syncthreads; w >= 0: the 32 lanes of warp w
inline void barrier(int kind)
{
    State &s = st();
    Fiber &f = s.fibers[s.cur];
    int &count = kind < 0 ? s.bar_count : s.w_count[kind];
    const int live = kind < 0 ? s.bar_live : s.w_live[kind];
    if (++count == live) {
        count = 0;
        release(kind);
        return;
    }
    f.state = WAITING;
    f.wait_kind = kind;
    to_scheduler(f);
}

inline void fiber_entry()
{
    State &s = st();
#ifdef ECC_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &s.sched_bottom, &s.sched_size);
#endif
    s.body();
    Fiber &f = s.fibers[s.cur];
    f.state = DONE;
    const int w = (int)(f.tid / 32);
    s.bar_live--;
    s.w_live[w]--;
    // a barrier that now has all its live threads can open
    if (s.bar_count > 0 && s.bar_count == s.bar_live) {
        s.bar_count = 0;
        release(-1);
    }
    if (s.w_count[w] > 0 && s.w_count[w] == s.w_live[w]) {
        s.w_count[w] = 0;
        release(w);
    }
#ifdef ECC_EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, s.sched_bottom, s.sched_size);
#endif
    // returning resumes uc_link (the scheduler)
}

inline void run_block(unsigned nthreads)
{
    State &s = st();
    s.fibers.assign(nthreads, Fiber());
    s.bar_count = 0;
    s.bar_live = (int)nthreads;
    const int nw = (int)((nthreads + 31) / 32);
    s.w_count.assign(nw, 0);
    s.w_live.assign(nw, 0);
    s.w_slot.assign((size_t)nw * 32, 0);
    for (unsigned t = 0; t < nthreads; t++) {
        s.w_live[t / 32]++;
        Fiber &f = s.fibers[t];
        f.tid = t;
        f.state = RUNNABLE;
        f.wait_kind = 0;
        if (!s.stacks[t])
            s.stacks[t] = malloc(STACK);
        f.stack = s.stacks[t];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = STACK;
        f.ctx.uc_link = &s.sched;
        makecontext(&f.ctx, fiber_entry, 0);
    }
    std::vector<int> order;
    for (;;) {
        order.clear();
        int done = 0;
        for (unsigned t = 0; t < nthreads; t++) {
            if (s.fibers[t].state == RUNNABLE)
                order.push_back((int)t);
            done += s.fibers[t].state == DONE;
        }
        if (done == (int)nthreads)
            break;
        if (order.empty()) {
            fprintf(stderr,
                    "cuda_emu: %s block (%u, %u): deadlock: %d threads wait at a barrier that the other %d never "
                    "reach\n",
                    s.kernel, s.bidx.x, s.bidx.y, (int)nthreads - done, done);
            abort();
        }
        std::shuffle(order.begin(), order.end(), s.rng);
        for (int t : order) {
            if (s.fibers[t].state != RUNNABLE)
                continue;
            s.cur = t;
#ifdef ECC_EMU_ASAN
            void *fake = nullptr;
            __sanitizer_start_switch_fiber(&fake, s.fibers[t].stack, STACK);
            swapcontext(&s.sched, &s.fibers[t].ctx);
            __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
            swapcontext(&s.sched, &s.fibers[t].ctx);
#endif
        }
    }
    s.cur = -1;
}

inline void *dynamic_shared() { return st().smem; }

template <class Sig> struct Launcher;
template <class... P> struct Launcher<void(P...)> {
    const char *name;
    void (*f)(P...);
    dim3 g, b;
    size_t smem;
    void operator()(P... a) const
    {
        State &s = st();
        if (!s.seeded) {
            const char *seed = getenv("ECC_EMU_SEED");
            s.rng.seed(seed ? (unsigned)strtoul(seed, NULL, 10) : 1u);
            s.seeded = true;
        }
        auto lim = s.smem_limit.find((const void *)f);
        const size_t smem_max = lim != s.smem_limit.end() ? (size_t)lim->second : (size_t)SMEM_DEFAULT;
        const unsigned threads = b.x * b.y * b.z;
        if (b.y != 1 || b.z != 1 || threads == 0 || threads > MAX_THREADS || g.x == 0 || g.y == 0 || g.z != 1 ||
            g.x > 2147483647u || g.y > 65535u || smem > smem_max) {
            fprintf(stderr, "cuda_emu: %s: invalid launch: grid (%u, %u, %u), block (%u, %u, %u), %zu bytes of dynamic "
                    "shared memory (limit %zu)\n", name, g.x, g.y, g.z, b.x, b.y, b.z, smem, smem_max);
            s.last_error = cudaErrorInvalidConfiguration;
            return;
        }
        if (threads % 32)
            fprintf(stderr, "cuda_emu: %s: warning: a block of %u threads is not a whole number of warps\n", name,
                    threads);
        s.kernel = name;
        s.grid = g;
        s.block = b;
        s.body = [&]() { f(a...); };
        for (unsigned y = 0; y < g.y; y++)
            for (unsigned x = 0; x < g.x; x++) {
                s.bidx = dim3(x, y, 0);
                s.smem = (unsigned char *)malloc(smem ? smem : 1);
                memset(s.smem, 0xFF, smem ? smem : 1);
                run_block(threads);
                free(s.smem);
                s.smem = nullptr;
            }
    }
};

template <class... P> Launcher<void(P...)> launch(const char *name, void (*f)(P...), dim3 g, dim3 b, size_t smem)
{
    return Launcher<void(P...)>{name, f, g, b, smem};
}

template <class T> inline T shfl_xor(T v, int o)
{
    State &s = st();
    const unsigned tid = s.fibers[s.cur].tid, w = tid / 32, lane = tid % 32;
    unsigned long long bits = 0;
    memcpy(&bits, &v, sizeof v);
    s.w_slot[w * 32 + lane] = bits;
    barrier((int)w);
    bits = s.w_slot[w * 32 + ((lane ^ (unsigned)o) & 31u)];
    barrier((int)w);
    T r;
    memcpy(&r, &bits, sizeof r);
    return r;
}

inline unsigned match_any(int v)
{
    State &s = st();
    const unsigned tid = s.fibers[s.cur].tid, w = tid / 32, lane = tid % 32;
    s.w_slot[w * 32 + lane] = (unsigned long long)(unsigned)v;
    barrier((int)w);
    unsigned m = 0;
    for (unsigned l = 0; l < 32; l++)
        if (s.w_slot[w * 32 + l] == (unsigned long long)(unsigned)v)
            m |= 1u << l;
    barrier((int)w);
    (void)lane;
    return m;
}

} // namespace ecc_emu

#define threadIdx (ecc_emu::thread_idx())
#define blockIdx (ecc_emu::st().bidx)
#define blockDim (ecc_emu::st().block)
#define gridDim (ecc_emu::st().grid)

inline void __syncthreads() { ecc_emu::barrier(-1); }
template <class T> inline T __shfl_xor_sync(unsigned, T v, int o) { return ecc_emu::shfl_xor(v, o); }
inline unsigned __match_any_sync(unsigned, int v) { return ecc_emu::match_any(v); }
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int atomicAdd(int *p, int v)
{
    int old = *p; // one OS thread: no race
    *p = old + v;
    return old;
}
inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}
// compiled with -ffp-contract=off: plain operations are the rounded ones
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// ---- runtime API -----------------------------------------------------------------------

inline const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    default: return "cudaErrorLaunchFailure";
    }
}
inline const char *cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }
inline cudaError_t cudaGetLastError()
{
    cudaError_t e = ecc_emu::st().last_error;
    ecc_emu::st().last_error = cudaSuccess;
    return e;
}
inline cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev)
{
    if (dev != 0)
        return cudaErrorInvalidValue;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulation of a CUDA device (kernels/emu/cuda_emu.h)");
    p->totalGlobalMem = (size_t)16 << 30;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = ecc_emu::SM_COUNT;
    return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int *v)
{
    *v = 13000;
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : cudaErrorInvalidValue; }
inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int dev)
{
    switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = ecc_emu::SM_COUNT; break;
    case cudaDevAttrMaxGridDimX: *v = 2147483647; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = ecc_emu::SMEM_OPTIN; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    }
    return dev == 0 ? cudaSuccess : cudaErrorInvalidValue;
}
template <class F> inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, F *)
{
    a->maxThreadsPerBlock = ecc_emu::MAX_THREADS;
    return cudaSuccess;
}
template <class F> inline cudaError_t cudaFuncSetAttribute(F *f, cudaFuncAttribute, int value)
{
    if (value < 0 || value > ecc_emu::SMEM_OPTIN)
        return cudaErrorInvalidValue;
    ecc_emu::st().smem_limit[(const void *)f] = value;
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
    *s = (cudaStream_t)malloc(1);
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    free(s);
    return cudaSuccess;
}
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned)
{
    *e = (cudaEvent_t)malloc(1);
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    free(e);
    return cudaSuccess;
}
inline cudaError_t cudaMalloc(void **p, size_t n)
{
    *p = n <= ((size_t)1 << 40) ? aligned_alloc(256, (n + 255) & ~(size_t)255) : NULL;
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void *p)
{
    free(p);
    return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void **p, size_t n) { return cudaMalloc(p, n); }
inline cudaError_t cudaFreeHost(void *p) { return cudaFree(p); }
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t)
{
    memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy2DAsync(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h,
                                     cudaMemcpyKind, cudaStream_t)
{
    if (w > dp || w > sp)
        return cudaErrorInvalidValue;
    for (size_t r = 0; r < h; r++)
        memcpy((char *)d + r * dp, (const char *)s + r * sp, w);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t)
{
    memset(p, v, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot)
{
    *fr = (size_t)8 << 30;
    *tot = (size_t)16 << 30;
    return cudaSuccess;
}

// ---- cuBLAS -----------------------------------------------------------------------------

typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef struct ecc_emu_blas *cublasHandle_t;
typedef enum { CUBLAS_OP_N, CUBLAS_OP_T } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH, CUBLAS_PEDANTIC_MATH } cublasMath_t;
typedef enum { CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_COMPUTE_32F_FAST_16BF } cublasComputeType_t;
typedef enum { CUDA_R_32F } cudaDataType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;

inline const char *cublasGetStatusName(cublasStatus_t s)
{
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS"
           : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE"
           : s == CUBLAS_STATUS_ALLOC_FAILED ? "CUBLAS_STATUS_ALLOC_FAILED"
                                             : "CUBLAS_STATUS_NOT_SUPPORTED";
}
inline const char *cublasGetStatusString(cublasStatus_t s) { return cublasGetStatusName(s); }
inline cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = (cublasHandle_t)malloc(1);
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetWorkspace(cublasHandle_t, void *ws, size_t n)
{
    return ((uintptr_t)ws % 256 == 0 && n > 0) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

namespace ecc_emu {
// a copy of a column-major (rows x cols, ld) matrix with every value rounded to
// the compute type's input precision (TF32: 10-bit mantissa; BF16: 7-bit)
inline std::vector<float> round_inputs(const float *a, int64_t ld, int64_t cols, cublasComputeType_t c)
{
    std::vector<float> v(a, a + ld * cols);
    const int drop = c == CUBLAS_COMPUTE_32F_FAST_TF32 ? 13 : 16;
    for (float &x : v) {
        uint32_t u;
        memcpy(&u, &x, 4);
        u += ((1u << (drop - 1)) - 1) + ((u >> drop) & 1);
        u &= ~((1u << drop) - 1);
        memcpy(&x, &u, 4);
    }
    return v;
}
} // namespace ecc_emu

inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                                                 int lda, long long sA, const void *B, cudaDataType_t bt, int ldb,
                                                 long long sB, const void *beta, void *C, cudaDataType_t ct, int ldc,
                                                 long long sC, int batch, cublasComputeType_t comp, cublasGemmAlgo_t)
{
    const int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
    const int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;
    if (!h || m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, arows) || ldb < std::max(1, brows) ||
        ldc < std::max(1, m) || at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F) {
        fprintf(stderr, "cuda_emu: cublasGemm: invalid arguments m=%d n=%d k=%d lda=%d ldb=%d ldc=%d batch=%d\n", m, n,
                k, lda, ldb, ldc, batch);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const float al = *(const float *)alpha, be = *(const float *)beta;
    for (int i = 0; i < batch && m > 0 && n > 0; i++) {
        const float *a = (const float *)A + i * sA, *b = (const float *)B + i * sB;
        float *c = (float *)C + i * sC;
        std::vector<float> ra, rb;
        if (comp != CUBLAS_COMPUTE_32F && k > 0) {
            ra = ecc_emu::round_inputs(a, lda, acols, comp);
            rb = ecc_emu::round_inputs(b, ldb, bcols, comp);
            a = ra.data();
            b = rb.data();
        }
        if (k == 0) { // C = beta C (cuBLAS does not read C when beta = 0)
            for (int col = 0; col < n; col++)
                for (int r = 0; r < m; r++)
                    c[(int64_t)col * ldc + r] = be == 0 ? 0.0f : be * c[(int64_t)col * ldc + r];
            continue;
        }
        if (be == 0) // BLAS reads C even with beta = 0 (NaN * 0): cuBLAS does not
            for (int col = 0; col < n; col++)
                memset(c + (int64_t)col * ldc, 0, sizeof(float) * (size_t)m);
        cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, al, a, lda, b, ldb, be, c, ldc);
    }
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                                   cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                                   cublasComputeType_t comp, cublasGemmAlgo_t algo)
{
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1,
                                      comp, algo);
}

// ---- CUB -------------------------------------------------------------------------------

namespace cub {
template <class T, int BLOCK> struct BlockScan {
    struct TempStorage {
        T v[BLOCK];
    };
    TempStorage &t;
    explicit BlockScan(TempStorage &s) : t(s) {}
    void ExclusiveSum(T in, T &out, T &aggregate)
    {
        const int tid = (int)threadIdx.x;
        if ((int)blockDim.x != BLOCK) {
            fprintf(stderr, "cuda_emu: BlockScan<%d> in a block of %u threads\n", BLOCK, blockDim.x);
            abort();
        }
        t.v[tid] = in;
        __syncthreads();
        T acc = T(), all = T();
        for (int i = 0; i < BLOCK; i++) {
            if (i == tid)
                acc = all;
            all = all + t.v[i];
        }
        out = acc;
        aggregate = all;
        __syncthreads();
    }
};

struct DeviceRadixSort {
    template <class K, class V, class N>
    static cudaError_t SortPairsDescending(void *tmp, size_t &bytes, const K *kin, K *kout, const V *vin, V *vout,
                                           N n, int = 0, int = (int)(sizeof(K) * 8), cudaStream_t = 0)
    {
        if (!tmp) {
            bytes = 64;
            return cudaSuccess;
        }
        if (bytes < 64)
            return cudaErrorInvalidValue;
        std::vector<std::pair<K, V>> p((size_t)n);
        for (N i = 0; i < n; i++)
            p[(size_t)i] = std::make_pair(kin[i], vin[i]);
        std::stable_sort(p.begin(), p.end(), [](const std::pair<K, V> &a, const std::pair<K, V> &b) {
            return a.first > b.first; // -0.0 and +0.0 are equal, as CUB treats them
        });
        for (N i = 0; i < n; i++) {
            kout[i] = p[(size_t)i].first;
            vout[i] = p[(size_t)i].second;
        }
        return cudaSuccess;
    }
};
} // namespace cub

#endif
