// The CUDA backend. This file grows into the full op set of host/backend.h
// (issue 8); today it answers what the host asks about GPUs.
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" {
#include "backend.h"
#include "util.h"
}

extern "C" int ecc_cuda_device_count(char *why, size_t why_len)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {  // no driver, insufficient driver, no device: all mean "no GPU"
        snprintf(why, why_len, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
        cudaGetLastError();
        return 0;
    }
    if (n == 0)
        snprintf(why, why_len, "no CUDA device found");
    return n;
}

extern "C" void ecc_cuda_describe(int i, char *buf, size_t len)
{
    cudaDeviceProp p;
    int driver = 0;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
        snprintf(buf, len, "device %d: cannot query properties", i);
        return;
    }
    cudaDriverGetVersion(&driver);
    snprintf(buf, len, "%d: %s, %.1f GiB, compute capability %d.%d, %d SMs, driver %d.%d", i, p.name,
             (double)p.totalGlobalMem / (1 << 30), p.major, p.minor, p.multiProcessorCount, driver / 1000,
             (driver % 1000) / 10);
}

extern "C" ecc_status ecc_backend_cuda_create(ecc_backend **out, int threads)
{
    *out = NULL;
    return ecc_fail(ECC_ERR_UNSUPPORTED, "the CUDA backend's ops are not written yet (issue 8); use --device cpu");
}
