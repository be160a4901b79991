/* The public analysis API (include/eccolo.h): ecco.analysis's four functions
 * on two matrices in Ecco's layout, and all layer pairs of two sets. */
#include <stdlib.h>
#include <string.h>

#include "analysis/analysis.h"
#include "util.h"

#define ECCO_EPSILON 1e-10 /* ecco.analysis: cca and svcca pass it, pwcca's default */
#define ECCO_SVCCA_DIMS 20

void ecc_compare_options_default(ecc_compare_options *o)
{
    memset(o, 0, sizeof *o);
    o->method = ECC_COMPARE_CKA;
    o->dims = ECCO_SVCCA_DIMS;
    o->epsilon = ECCO_EPSILON;
    o->device = ECC_DEVICE_AUTO;
}

const char *ecc_compare_method_name(ecc_compare_method m)
{
    switch (m) {
    case ECC_COMPARE_CCA: return "cca";
    case ECC_COMPARE_SVCCA: return "svcca";
    case ECC_COMPARE_PWCCA: return "pwcca";
    case ECC_COMPARE_CKA: return "cka";
    }
    return "unknown";
}

ecc_status ecc_compare_layers(double *values, const float *a, const float *b, int La, int Lb, int Na, int Nb, int T,
                              const ecc_compare_options *o)
{
    ecc_compare_options def;
    if (!o) {
        ecc_compare_options_default(&def);
        o = &def;
    }
    if (!values)
        return ecc_fail(ECC_ERR_INPUT, "ecc_compare_layers: values is NULL");
    ecc_backend *be = NULL;
    ECC_TRY(ecc_backend_create(&be, o->device, o->threads, ECC_PRECISION_FP32, NULL));
    ecc_status st = ecc_analysis_compare(be, values, a, b, La, Lb, Na, Nb, T, o);
    be->destroy(be);
    return st;
}

/* One pair in Ecco's layout: acts (n, T) -> (T, n), then one comparison on the CPU. */
static ecc_status one_pair(double *score, const float *acts1, const float *acts2, int n1, int n2, int T,
                           const ecc_compare_options *o)
{
    if (!score || !acts1 || !acts2)
        return ecc_fail(ECC_ERR_INPUT, "ecc_%s: score, acts1 and acts2 must not be NULL",
                        ecc_compare_method_name(o->method));
    if (n1 < 1 || n2 < 1 || T < 1 || (int64_t)T * ECC_MAX(n1, n2) >= ((int64_t)1 << 31))
        return ecc_fail(ECC_ERR_INPUT, "ecc_%s: sizes must be positive and n x T below 2^31 (got %d, %d neurons, %d "
                        "tokens)", ecc_compare_method_name(o->method), n1, n2, T);
    float *x = ecc_malloc(sizeof(float) * (size_t)T * n1, "acts1 transposed");
    float *y = ecc_malloc(sizeof(float) * (size_t)T * n2, "acts2 transposed");
    ecc_status st = x && y ? ECC_OK : ECC_ERR_NOMEM;
    for (int t = 0; st == ECC_OK && t < T; t++) {
        for (int i = 0; i < n1; i++)
            x[(int64_t)t * n1 + i] = acts1[(int64_t)i * T + t];
        for (int i = 0; i < n2; i++)
            y[(int64_t)t * n2 + i] = acts2[(int64_t)i * T + t];
    }
    ecc_backend *be = NULL;
    if (st == ECC_OK)
        st = ecc_backend_cpu_create(&be, o->threads);
    if (st == ECC_OK)
        st = ecc_analysis_compare(be, score, x, y, 1, 1, n1, n2, T, o);
    if (be)
        be->destroy(be);
    free(x);
    free(y);
    return st;
}

static ecc_compare_options pair_options(ecc_compare_method m)
{
    ecc_compare_options o;
    ecc_compare_options_default(&o);
    o.method = m;
    o.device = ECC_DEVICE_CPU;
    return o;
}

ecc_status ecc_cca(double *score, const float *acts1, const float *acts2, int n1, int n2, int T)
{
    ecc_compare_options o = pair_options(ECC_COMPARE_CCA);
    return one_pair(score, acts1, acts2, n1, n2, T, &o);
}

ecc_status ecc_svcca(double *score, const float *acts1, const float *acts2, int dims, int n1, int n2, int T)
{
    ecc_compare_options o = pair_options(ECC_COMPARE_SVCCA);
    o.dims = dims;
    return one_pair(score, acts1, acts2, n1, n2, T, &o);
}

ecc_status ecc_pwcca(double *score, const float *acts1, const float *acts2, double epsilon, int n1, int n2, int T)
{
    ecc_compare_options o = pair_options(ECC_COMPARE_PWCCA);
    o.epsilon = epsilon;
    return one_pair(score, acts1, acts2, n1, n2, T, &o);
}

ecc_status ecc_cka(double *score, const float *acts1, const float *acts2, int n1, int n2, int T)
{
    ecc_compare_options o = pair_options(ECC_COMPARE_CKA);
    return one_pair(score, acts1, acts2, n1, n2, T, &o);
}
