/* The normalizers of tokenizer.json (NFC, NFD, NFKC, NFKD, Replace, Prepend,
 * and Sequence, flattened at load time), applied in order to one stretch of
 * text between added tokens, as tokenizers' NormalizedString does. */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok.h"
#include "util.h"

/* Replace every match of n's pattern in s[0..len) with its content. */
static ecc_status replace(tok_buf *o, const tok_norm *nm, pcre2_match_data *md, const uint8_t *s, size_t len)
{
    size_t at = 0;
    if (!nm->re) {
        for (;;) {
            const uint8_t *p = memmem(s + at, len - at, nm->pattern, nm->pattern_len);
            if (!p)
                break;
            ECC_TRY(buf_add(o, s + at, (size_t)(p - (s + at))));
            ECC_TRY(buf_add(o, nm->content, nm->content_len));
            at = (size_t)(p - s) + nm->pattern_len;
        }
        return buf_add(o, s + at, len - at);
    }
    re_iter it = {.re = nm->re, .md = md, .s = s, .len = len};
    size_t ms, me;
    int r;
    while ((r = re_next(&it, &ms, &me)) > 0) {
        ECC_TRY(buf_add(o, s + at, ms - at));
        ECC_TRY(buf_add(o, nm->content, nm->content_len));
        at = me;
    }
    if (r < 0)
        return ECC_ERR_INPUT;
    return buf_add(o, s + at, len - at);
}

static int all_ascii(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0x80)
            return 0;
    return 1;
}

ecc_status normalize_text(const ecc_tokenizer *t, pcre2_match_data *md, uint8_t **out, size_t *out_len,
                          const uint8_t *s, size_t n)
{
    uint8_t *cur = (uint8_t *)s; /* owned (malloc'd) when cur != s */
    size_t len = n;
    ecc_status st = ECC_OK;
    for (int k = 0; st == ECC_OK && k < t->n_norm; k++) {
        const tok_norm *nm = &t->norm[k];
        uint8_t *next = NULL;
        size_t next_len = 0;
        if (nm->kind <= NORM_NFKD) {
            if (all_ascii(cur, len)) /* ASCII is in every normalization form */
                continue;
            static const int form[] = {[NORM_NFC] = UNI_NFC, [NORM_NFD] = UNI_NFD, [NORM_NFKC] = UNI_NFKC,
                                       [NORM_NFKD] = UNI_NFKD};
            st = uni_normalize(&next, &next_len, cur, len, form[nm->kind]);
        } else if (nm->kind == NORM_PREPEND) {
            if (len == 0)
                continue;
            tok_buf b = {0};
            st = buf_add(&b, nm->content, nm->content_len);
            if (st == ECC_OK)
                st = buf_add(&b, cur, len);
            next = b.p, next_len = b.n;
        } else {
            tok_buf b = {0};
            st = replace(&b, nm, md, cur, len);
            next = b.p, next_len = b.n;
        }
        if (st != ECC_OK) {
            free(next);
            break;
        }
        if (cur != s)
            free(cur);
        cur = next, len = next_len;
    }
    if (st != ECC_OK) {
        if (cur != s)
            free(cur);
        return st;
    }
    *out = cur;
    *out_len = len;
    return ECC_OK;
}
