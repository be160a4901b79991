/* Encoding: the whole pipeline (see tok.h) for one text. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok.h"
#include "util.h"

/* A stretch of normalized text between added tokens. */
static ecc_status normalized_segment(encoder *e, const uint8_t *s, size_t n, int at_origin)
{
    return pretokenize(e, s, n, at_origin);
}

/* A stretch of the user's text between added tokens that match it as written. */
static ecc_status raw_segment(encoder *e, const uint8_t *s, size_t n, int at_origin)
{
    uint8_t *norm;
    size_t len;
    ECC_TRY(normalize_text(e->t, e->md, &norm, &len, s, n));
    ecc_status st = split_added(e, &e->t->norm_trie, norm, len, at_origin, normalized_segment);
    if (norm != s)
        free(norm);
    return st;
}

ecc_status ecc_tokenizer_encode_flags(const ecc_tokenizer *t, const char *text, size_t len, unsigned flags,
                                      int32_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    if (!text && len)
        return ecc_fail(ECC_ERR_INPUT, "text: NULL with a length of %zu", len);
    if (len > INT_MAX / 2)
        return ecc_fail(ECC_ERR_INPUT, "text: %zu bytes is more than the %d allowed", len, INT_MAX / 2);
    if (!text)
        text = "";
    size_t bad = utf8_first_invalid((const uint8_t *)text, len);
    if (bad < len)
        return ecc_fail(ECC_ERR_INPUT, "invalid UTF-8 at byte %zu (0x%02X); eccolo reads UTF-8 text", bad,
                        (unsigned)(uint8_t)text[bad]);
    encoder e = {.t = t, .flags = flags};
    e.md = pcre2_match_data_create(32, NULL);
    ecc_status s = e.md ? ECC_OK : ecc_fail(ECC_ERR_NOMEM, "out of memory for PCRE2 match data");
    if (s == ECC_OK && (flags & ECC_TOK_ADD_SPECIAL))
        for (int i = 0; s == ECC_OK && i < t->n_front; i++)
            s = ids_add(&e.out, t->tmpl_front[i]);
    if (s == ECC_OK)
        s = split_added(&e, &t->raw_trie, (const uint8_t *)text, len, 1, raw_segment);
    if (s == ECC_OK && (flags & ECC_TOK_ADD_SPECIAL))
        for (int i = 0; s == ECC_OK && i < t->n_back; i++)
            s = ids_add(&e.out, t->tmpl_back[i]);
    if (s == ECC_OK && e.out.n > INT_MAX)
        s = ecc_fail(ECC_ERR_INPUT, "text: more than %d tokens", INT_MAX);
    pcre2_match_data_free(e.md);
    bpe_free(&e);
    if (s != ECC_OK) {
        free(e.out.p);
        return s;
    }
    if (!e.out.p && !(e.out.p = malloc(sizeof(int32_t)))) /* callers free() the array, even when empty */
        return ecc_fail(ECC_ERR_NOMEM, "out of memory for token ids");
    *ids = e.out.p;
    *n = (int)e.out.n;
    return ECC_OK;
}

ecc_status ecc_tokenizer_encode(const ecc_tokenizer *t, const char *text, size_t len, int32_t **ids, int *n)
{
    return ecc_tokenizer_encode_flags(t, text, len, 0, ids, n);
}

int ecc_tokenizer_n_vocab(const ecc_tokenizer *t) { return t->n_vocab; }
int32_t ecc_tokenizer_eot(const ecc_tokenizer *t) { return t->eot; }

int ecc_tokenizer_template(const ecc_tokenizer *t, const int32_t **front, int *n_front, const int32_t **back,
                           int *n_back)
{
    if (front)
        *front = t->tmpl_front;
    if (n_front)
        *n_front = t->n_front;
    if (back)
        *back = t->tmpl_back;
    if (n_back)
        *n_back = t->n_back;
    return t->n_front + t->n_back;
}

const char *ecc_tokenizer_template_source(const ecc_tokenizer *t)
{
    return t->tmpl_source ? t->tmpl_source : "none";
}

int ecc_tokenizer_is_special(const ecc_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->added_of_id && t->added_of_id[id] >= 0 &&
           t->added[t->added_of_id[id]].special;
}
