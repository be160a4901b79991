/* Choosing a backend for --device, and what the build knows about GPUs. */
#include "backend/backend.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#ifdef ECCOLO_HAVE_CUDA
/* kernels/backend_cuda.cu */
int ecc_cuda_device_count(char *why, size_t why_len, int *absent);
void ecc_cuda_describe(int i, char *buf, size_t len);
#endif

#ifndef ECCOLO_HAVE_CUDA
/* without CUDA the NVTX ranges are no-ops (kernels/backend_cuda.cu otherwise) */
void ecc_nvtx_push(const char *name) { (void)name; }
void ecc_nvtx_pop(void) {}
#endif

const char *ecc_version(void) { return ECCOLO_VERSION; }

const char *ecc_build_info(void)
{
#ifdef ECCOLO_HAVE_CUDA
    return ECCOLO_BUILD_TYPE ", CUDA backend compiled for sm " ECCOLO_CUDA_ARCHS;
#else
    return ECCOLO_BUILD_TYPE ", CPU only (built without CUDA)";
#endif
}

/* An NVIDIA device node (nvidia0, nvidiactl, ...) in dev_dir: the driver's
 * sign that a GPU is installed. */
static int nvidia_nodes(const char *dev_dir)
{
    DIR *d = opendir(dev_dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)))
        found = strncmp(e->d_name, "nvidia", 6) == 0;
    closedir(d);
    return found;
}

int ecc_gpu_probe_in(const char *dev_dir, char *why, size_t why_len, int *absent)
{
#ifdef ECCOLO_HAVE_CUDA
    int n = ecc_cuda_device_count(why, why_len, absent);
    if (n == 0 && !*absent && !nvidia_nodes(dev_dir))
        *absent = 1; /* the runtime's error, but no device node: no GPU here */
    return n;
#else
    *absent = !nvidia_nodes(dev_dir);
    snprintf(why, why_len, "eccolo was built without CUDA (configure with -DECCOLO_CUDA=ON where nvcc is installed)");
    return 0;
#endif
}

int ecc_gpu_probe(char *why, size_t why_len, int *absent) { return ecc_gpu_probe_in("/dev", why, why_len, absent); }

int ecc_gpu_count(char *why, size_t why_len)
{
    int absent;
    return ecc_gpu_probe(why, why_len, &absent);
}

void ecc_gpu_describe(int i, char *buf, size_t len)
{
#ifdef ECCOLO_HAVE_CUDA
    ecc_cuda_describe(i, buf, len);
#else
    snprintf(buf, len, "none");
#endif
}

ecc_status ecc_backend_create(ecc_backend **out, ecc_device dev, int threads, ecc_precision precision,
                              const char **notice)
{
    static _Thread_local char note[512];
    *out = NULL;
    if (notice)
        *notice = NULL;
    if (dev == ECC_DEVICE_CPU && precision != ECC_PRECISION_FP32)
        return ecc_fail(ECC_ERR_INPUT, "--precision tf32 and bf16 are for the GPU; the CPU computes in fp32");
    if (dev == ECC_DEVICE_CPU)
        return ecc_backend_cpu_create(out, threads);
    char why[256] = "";
    int absent;
    int n = ecc_gpu_probe(why, sizeof why, &absent);
    if (n == 0) {
        if (dev == ECC_DEVICE_CUDA)
            return ecc_fail(ECC_ERR_DEVICE, "--device cuda: no usable GPU (%s); use --device cpu or auto", why);
        if (precision != ECC_PRECISION_FP32)
            return ecc_fail(ECC_ERR_DEVICE, "--precision tf32 and bf16 need a GPU, and none is usable (%s)", why);
        /* no GPU here at all: the CPU is simply the machine, nothing to say */
        if (!absent) {
            snprintf(note, sizeof note, "no usable GPU (%s): running on the CPU", why);
            if (notice)
                *notice = note;
        }
        return ecc_backend_cpu_create(out, threads);
    }
#ifdef ECCOLO_HAVE_CUDA
    ecc_status s = ecc_backend_cuda_create(out, threads, precision);
    if (s == ECC_OK || dev == ECC_DEVICE_CUDA)
        return s;
    snprintf(note, sizeof note, "the GPU could not be used (%s): running on the CPU", ecc_last_error());
    if (notice)
        *notice = note;
#endif
    return ecc_backend_cpu_create(out, threads);
}
