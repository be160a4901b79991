/* Internal to the report (report.c, report_data.c): the page's data, a JSON
 * header plus one binary blob (base64 in the page) that typed arrays view. */
#ifndef ECC_REPORT_DATA_H
#define ECC_REPORT_DATA_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "io/run_reader.h"

/* The front end, embedded at build time by host/report/embed.cmake (each
 * array ends with a NUL not counted in _len). */
extern const unsigned char ecc_report_html[], ecc_report_css[], ecc_report_js[];
extern const size_t ecc_report_html_len, ecc_report_css_len, ecc_report_js_len;

/* Element types of the arrays in the blob, as the JS names them. */
typedef enum rep_type { REP_U8, REP_U16, REP_I32, REP_F32 } rep_type;

typedef struct rep_ctx {
    const ecc_run_dir *run;
    int T, n_input, G;        /* tokens, prompt tokens, generated tokens (G = T - n_input) */
    cJSON *meta;              /* the JSON header of the page */
    uint8_t *blob;            /* the binary arrays, each 8-byte aligned */
    size_t blob_len, blob_cap;
    int32_t *vocab;           /* token ids whose text the page needs (layer predictions, watch list) */
    int n_vocab, cap_vocab;
} rep_ctx;

/* Reserve COUNT elements of TYPE in the blob and describe them in OBJ under
 * KEY as {"type": "u16", "off": bytes, "n": count}. The pointer is valid until
 * the next rep_alloc; NULL (ECC_ERR_NOMEM recorded) on failure. */
void *rep_alloc(rep_ctx *c, cJSON *obj, const char *key, rep_type type, size_t count);
/* Push (x, j) into the list (val, idx) of the *m ≤ k largest so far, kept in
 * decreasing order; ties keep the earlier entry first; NaN is skipped. */
void rep_topk_push(float *val, int32_t *idx, int *m, int k, float x, int32_t j);
/* Note a token id whose text the page needs. */
ecc_status rep_need_id(rep_ctx *c, int32_t id);

/* The sections of the page, each added to c->meta only when its tensors are
 * in the run; a tensor of the wrong shape is an ECC_ERR_FORMAT error. */
ecc_status rep_saliency(rep_ctx *c);    /* attribution.*, token_logprobs */
ecc_status rep_rankings(rep_ctx *c);    /* rankings, layer_top_*, watch_* */
ecc_status rep_activations(rep_ctx *c); /* activations */
ecc_status rep_attention(rep_ctx *c);   /* attention */

#endif
