/* The report page in memory (include/eccolo.h, "the report page, in memory"):
 * the page eccolo report writes (report.c), for a described run and optional
 * NMF factors, into a growing buffer instead of a file. */
#include <stdlib.h>
#include <string.h>

#include "engine/run_api.h"
#include "nmf/nmf_runs.h"
#include "report/report.h"
#include "util.h"

typedef struct membuf {
    char *p;
    size_t len, cap;
    int failed;
} membuf;

static int mem_put(void *ctx, const void *data, size_t n)
{
    membuf *b = ctx;
    if (b->failed)
        return 0;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = 1;
            ecc_fail(ECC_ERR_NOMEM, "out of memory writing the report page (%zu bytes so far)", b->len);
            return 0;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 1;
}

ecc_status ecc_run_report_html(char **html, size_t *len, const ecc_run *r, const ecc_factors *nmf, const char *show)
{
    *html = NULL;
    if (len)
        *len = 0;
    if (!r)
        return ecc_fail(ECC_ERR_INPUT, "ecc_run_report_html: the run must not be NULL");
    ecc_run_dir *d;
    ECC_TRY(ecc_run_dir_of_run(&d, r));
    ecc_st_file *f = NULL;
    ecc_status s = nmf ? ecc_factors_view(&f, nmf) : ECC_OK;
    membuf b = {0};
    if (s == ECC_OK) {
        ecc_report_sink sink = {mem_put, &b};
        s = ecc_report_page(d, f, show, &sink);
    }
    if (s == ECC_OK && b.failed)
        s = ECC_ERR_NOMEM;
    ecc_st_close(f);
    ecc_run_dir_close(d);
    if (s != ECC_OK) {
        free(b.p);
        return s;
    }
    *html = b.p;
    if (len)
        *len = b.len;
    return ECC_OK;
}
