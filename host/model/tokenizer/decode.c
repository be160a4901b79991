/* Decoding: ids -> token strings -> the decoders of tokenizer.json
 * (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, and Sequence,
 * flattened), as tokenizers' Tokenizer::decode(ids, skip_special_tokens =
 * false) does. And each token's own bytes, for display: the decoders that
 * act on one token at a time, without Strip and without Metaspace's
 * first-token rule. */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok.h"
#include "util.h"

/* A list of strings: string i is b.p[off[i] .. off[i + 1]). */
typedef struct strlist {
    tok_buf b;
    size_t *off;
    size_t n;
} strlist;

static ecc_status list_init(strlist *l, size_t n)
{
    memset(l, 0, sizeof *l);
    l->off = ecc_malloc((n + 1) * sizeof *l->off, "decoded tokens");
    if (!l->off)
        return ECC_ERR_NOMEM;
    l->off[0] = 0;
    return buf_reserve(&l->b, 16); /* never a NULL buffer, even for empty strings */
}

static void list_free(strlist *l)
{
    free(l->b.p);
    free(l->off);
}

/* End the string being built as the list's next string. */
static void list_close(strlist *l) { l->off[++l->n] = l->b.n; }

#define STR(l, i) ((l)->b.p + (l)->off[i])
#define LEN(l, i) ((l)->off[(i) + 1] - (l)->off[i])

static ecc_status replace_into(tok_buf *o, const tok_dec *d, pcre2_match_data *md, const uint8_t *s, size_t n)
{
    size_t at = 0, ms, me;
    if (!d->re) {
        const uint8_t *q;
        while (d->pattern_len && (q = memmem(s + at, n - at, d->pattern, d->pattern_len))) {
            ECC_TRY(buf_add(o, s + at, (size_t)(q - (s + at))));
            ECC_TRY(buf_add(o, d->content, d->content_len));
            at = (size_t)(q - s) + d->pattern_len;
        }
        return buf_add(o, s + at, n - at);
    }
    if (utf8_first_invalid(s, n) < n) /* a token string that is not UTF-8 (a strange file): no match */
        return buf_add(o, s, n);
    re_iter it = {.re = d->re, .md = md, .s = s, .len = n};
    int r;
    while ((r = re_next(&it, &ms, &me)) > 0) {
        ECC_TRY(buf_add(o, s + at, ms - at));
        ECC_TRY(buf_add(o, d->content, d->content_len));
        at = me;
    }
    return r < 0 ? ECC_ERR_INPUT : buf_add(o, s + at, n - at);
}

/* <0xNN> -> NN, or -1. */
static int fallback_byte(const uint8_t *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        int c = s[i], h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Flush pending <0xNN> bytes as one string, or one U+FFFD per byte when not valid UTF-8. */
static ecc_status flush_bytes(strlist *o, tok_buf *bytes)
{
    if (bytes->n == 0)
        return ECC_OK;
    if (utf8_first_invalid(bytes->p, bytes->n) == bytes->n) {
        ECC_TRY(buf_add(&o->b, bytes->p, bytes->n));
        list_close(o);
    } else {
        for (size_t i = 0; i < bytes->n; i++) {
            ECC_TRY(buf_add(&o->b, "\xEF\xBF\xBD", 3));
            list_close(o);
        }
    }
    bytes->n = 0;
    return ECC_OK;
}

/* Apply decoder d to in, giving out (n + 1 offsets of room is enough except
 * for ByteFallback's replacement characters, which get 6 per byte token). */
static ecc_status apply_decoder(const ecc_tokenizer *t, const tok_dec *d, pcre2_match_data *md, strlist *out,
                                const strlist *in)
{
    ECC_TRY(list_init(out, d->kind == DEC_BYTEFALLBACK ? in->n : in->n + 1));
    switch (d->kind) {
    case DEC_BYTELEVEL: {
        tok_buf raw = {0};
        ecc_status st = buf_reserve(&raw, in->b.n + 1);
        for (size_t i = 0; st == ECC_OK && i < in->n; i++) {
            size_t m;
            if (tok_unmap(t, raw.p + raw.n, &m, (const char *)STR(in, i), LEN(in, i)))
                raw.n += m;
            else
                st = buf_add(&raw, STR(in, i), LEN(in, i));
        }
        if (st == ECC_OK)
            st = buf_reserve(&out->b, 3 * raw.n + 1);
        if (st == ECC_OK) {
            out->b.n = utf8_repair((char *)out->b.p, raw.p, raw.n);
            list_close(out);
        }
        free(raw.p);
        return st;
    }
    case DEC_FUSE:
        ECC_TRY(buf_add(&out->b, in->b.p, in->b.n));
        list_close(out);
        return ECC_OK;
    case DEC_BYTEFALLBACK: {
        tok_buf bytes = {0};
        ecc_status st = ECC_OK;
        for (size_t i = 0; st == ECC_OK && i < in->n; i++) {
            int v = fallback_byte(STR(in, i), LEN(in, i));
            if (v >= 0) {
                uint8_t c = (uint8_t)v;
                st = buf_add(&bytes, &c, 1);
                continue;
            }
            st = flush_bytes(out, &bytes);
            if (st == ECC_OK && (st = buf_add(&out->b, STR(in, i), LEN(in, i))) == ECC_OK)
                list_close(out);
        }
        if (st == ECC_OK)
            st = flush_bytes(out, &bytes);
        free(bytes.p);
        return st;
    }
    default:
        break;
    }
    for (size_t i = 0; i < in->n; i++) { /* per-token decoders */
        const uint8_t *s = STR(in, i);
        size_t n = LEN(in, i);
        if (d->kind == DEC_REPLACE) {
            ECC_TRY(replace_into(&out->b, d, md, s, n));
        } else if (d->kind == DEC_STRIP) {
            size_t a = 0, z = n;
            for (int k = 0; k < d->strip_start && a < n; k++) {
                int len;
                if (utf8_get_safe(s + a, n - a, &len) != d->strip_char)
                    break;
                a += (size_t)len;
            }
            for (int k = 0; k < d->strip_stop && z > a; k++) {
                size_t j = z - 1;
                while (j > a && (s[j] & 0xC0) == 0x80)
                    j--;
                int len;
                if (utf8_get_safe(s + j, z - j, &len) != d->strip_char)
                    break;
                z = j;
            }
            ECC_TRY(buf_add(&out->b, s + a, z - a));
        } else { /* DEC_METASPACE */
            for (size_t j = 0; j < n;) {
                int len;
                uint32_t cp = utf8_get_safe(s + j, n - j, &len);
                if (cp != d->repl)
                    ECC_TRY(buf_add(&out->b, s + j, (size_t)len));
                else if (!(i == 0 && d->scheme != PREPEND_NEVER))
                    ECC_TRY(buf_add(&out->b, " ", 1));
                j += (size_t)len;
            }
        }
        list_close(out);
    }
    return ECC_OK;
}

static ecc_status check_id(const ecc_tokenizer *t, const int32_t *ids, int i)
{
    if (ids[i] < 0 || ids[i] >= t->n_vocab || t->str_off[ids[i]] == TOK_NO_TOKEN)
        return ecc_fail(ECC_ERR_INPUT, "ids[%d] = %d is not a token id (the vocabulary has %d)", i, (int)ids[i],
                        t->n_vocab);
    return ECC_OK;
}

ecc_status ecc_tokenizer_decode(const ecc_tokenizer *t, const int32_t *ids, int n, char **text, size_t *len)
{
    *text = NULL;
    if (len)
        *len = 0;
    if (n < 0 || (!ids && n > 0))
        return ecc_fail(ECC_ERR_INPUT, "decode: %d ids", n);
    for (int i = 0; i < n; i++)
        ECC_TRY(check_id(t, ids, i));
    strlist cur;
    ECC_TRY(list_init(&cur, (size_t)n));
    ecc_status st = ECC_OK;
    for (int i = 0; st == ECC_OK && i < n; i++) {
        if (!t->has_decoder && i > 0)
            st = buf_add(&cur.b, " ", 1);
        if (st == ECC_OK && (st = buf_add(&cur.b, t->str_pool + t->str_off[ids[i]], t->str_len[ids[i]])) == ECC_OK)
            list_close(&cur);
    }
    pcre2_match_data *md = pcre2_match_data_create(16, NULL);
    if (!md && st == ECC_OK)
        st = ecc_fail(ECC_ERR_NOMEM, "out of memory for PCRE2 match data");
    for (int k = 0; st == ECC_OK && k < t->n_dec; k++) {
        strlist next;
        st = apply_decoder(t, &t->dec[k], md, &next, &cur);
        list_free(&cur);
        cur = next;
    }
    pcre2_match_data_free(md);
    if (st == ECC_OK)
        st = buf_add(&cur.b, "", 1);
    if (st != ECC_OK) {
        list_free(&cur);
        return st;
    }
    size_t m = cur.b.n - 1;
    if (utf8_first_invalid(cur.b.p, m) < m) { /* no decoder made it valid UTF-8 (e.g. none at all) */
        char *fixed = ecc_malloc(3 * m + 1, "decoded text");
        if (!fixed) {
            list_free(&cur);
            return ECC_ERR_NOMEM;
        }
        m = utf8_repair(fixed, cur.b.p, m);
        fixed[m] = '\0';
        free(cur.b.p);
        cur.b.p = (uint8_t *)fixed;
    }
    free(cur.off);
    *text = (char *)cur.b.p;
    if (len)
        *len = m;
    return ECC_OK;
}

/* The bytes token string s stands for on its own (see the top of this file). */
static ecc_status token_bytes(const ecc_tokenizer *t, pcre2_match_data *md, tok_buf *o, const char *s, size_t n)
{
    tok_buf cur = {0}, next = {0};
    ecc_status st = buf_reserve(&cur, n + 16); /* never NULL buffers, even for an empty token */
    if (st == ECC_OK)
        st = buf_reserve(&next, 16);
    if (st == ECC_OK)
        st = buf_add(&cur, s, n);
    for (int k = 0; st == ECC_OK && k < t->n_dec; k++) {
        const tok_dec *d = &t->dec[k];
        next.n = 0;
        if (d->kind == DEC_BYTELEVEL) {
            size_t m;
            st = buf_reserve(&next, cur.n + 1);
            if (st == ECC_OK && tok_unmap(t, next.p, &m, (const char *)cur.p, cur.n))
                next.n = m;
            else if (st == ECC_OK)
                st = buf_add(&next, cur.p, cur.n);
        } else if (d->kind == DEC_REPLACE) {
            st = replace_into(&next, d, md, cur.p, cur.n);
        } else if (d->kind == DEC_BYTEFALLBACK && fallback_byte(cur.p, cur.n) >= 0) {
            uint8_t c = (uint8_t)fallback_byte(cur.p, cur.n);
            st = buf_add(&next, &c, 1);
        } else if (d->kind == DEC_METASPACE) {
            for (size_t j = 0; st == ECC_OK && j < cur.n;) {
                int len = utf8_step(cur.p + j, cur.n - j);
                if (len < 1)
                    len = 1;
                uint8_t rep[4];
                int same = utf8_put(rep, d->repl) == len && memcmp(rep, cur.p + j, (size_t)len) == 0;
                st = buf_add(&next, same ? (const uint8_t *)" " : cur.p + j, same ? 1 : (size_t)len);
                j += (size_t)len;
            }
        } else {
            st = buf_add(&next, cur.p, cur.n);
        }
        tok_buf tmp = cur;
        cur = next, next = tmp;
    }
    if (st == ECC_OK)
        st = buf_add(o, cur.p, cur.n);
    free(cur.p), free(next.p);
    return st;
}

ecc_status tok_compute_bytes(ecc_tokenizer *t)
{
    tok_buf pool = {0};
    pcre2_match_data *md = pcre2_match_data_create(16, NULL);
    ecc_status st = md ? ECC_OK : ecc_fail(ECC_ERR_NOMEM, "out of memory for PCRE2 match data");
    t->tok_off = ecc_malloc((size_t)t->n_vocab * sizeof *t->tok_off, "token offsets");
    t->tok_len = ecc_calloc((size_t)t->n_vocab, sizeof *t->tok_len, "token lengths");
    if (st == ECC_OK && (!t->tok_off || !t->tok_len))
        st = ECC_ERR_NOMEM;
    if (st == ECC_OK)
        st = buf_reserve(&pool, t->str_used + 1);
    for (int id = 0; st == ECC_OK && id < t->n_vocab; id++) {
        t->tok_off[id] = TOK_NO_TOKEN;
        if (t->str_off[id] == TOK_NO_TOKEN)
            continue;
        size_t at = pool.n;
        st = token_bytes(t, md, &pool, t->str_pool + t->str_off[id], t->str_len[id]);
        if (st == ECC_OK && pool.n > UINT32_MAX)
            st = ecc_fail(ECC_ERR_FORMAT, "tokenizer: the tokens take more than 4 GiB");
        t->tok_off[id] = (uint32_t)at;
        t->tok_len[id] = (uint32_t)(pool.n - at);
    }
    pcre2_match_data_free(md);
    t->pool = pool.p;
    t->pool_used = pool.n;
    return st;
}

const uint8_t *ecc_tokenizer_token_bytes(const ecc_tokenizer *t, int32_t id, size_t *len)
{
    *len = 0;
    if (id < 0 || id >= t->n_vocab || t->str_off[id] == TOK_NO_TOKEN)
        return NULL;
    *len = t->tok_len[id];
    return t->pool + t->tok_off[id];
}

/* Is the character at s[0..n) (exactly one valid character) a letter or digit? */
static int is_alnum_char(const ecc_tokenizer *t, pcre2_match_data *md, const uint8_t *s, size_t n)
{
    return n > 0 && utf8_step(s, n) == (int)n && pcre2_match(t->re_alnum, s, n, 0, PCRE2_NO_UTF_CHECK, md, NULL) > 0;
}

/* Whether the token starts (last = 0) or ends (last = 1) with a letter or digit. */
static int edge_alnum(const ecc_tokenizer *t, pcre2_match_data *md, int32_t id, int last)
{
    const uint8_t *s = t->pool + t->tok_off[id];
    size_t n = t->tok_len[id], i = 0;
    if (n == 0)
        return 0;
    if (last) {
        for (i = n - 1; i > 0 && n - i < 4 && (s[i] & 0xC0) == 0x80;)
            i--;
        return is_alnum_char(t, md, s + i, n - i);
    }
    int k = utf8_step(s, n);
    return k > 0 && is_alnum_char(t, md, s, (size_t)k);
}

void ecc_tokenizer_display_free(char **display, int n)
{
    if (!display)
        return;
    for (int i = 0; i < n; i++)
        free(display[i]);
    free(display);
}

ecc_status ecc_tokenizer_display(const ecc_tokenizer *t, const int32_t *ids, int n, char ***display,
                                 uint8_t **partial)
{
    *display = NULL;
    *partial = NULL;
    if (n < 0 || (!ids && n > 0))
        return ecc_fail(ECC_ERR_INPUT, "display: %d ids", n);
    for (int i = 0; i < n; i++)
        ECC_TRY(check_id(t, ids, i));
    char **d = ecc_calloc((size_t)n + 1, sizeof *d, "token display strings");
    uint8_t *p = ecc_calloc((size_t)n + 1, 1, "partial flags");
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re_alnum, NULL);
    ecc_status s = d && p && md ? ECC_OK : ecc_fail(ECC_ERR_NOMEM, "out of memory for token display strings");
    for (int i = 0; s == ECC_OK && i < n; i++) {
        const uint8_t *b = t->pool + t->tok_off[ids[i]];
        size_t len = t->tok_len[ids[i]];
        if (!(d[i] = ecc_malloc(3 * len + 1, "a token display string"))) {
            s = ECC_ERR_NOMEM;
            break;
        }
        d[i][utf8_repair(d[i], b, len)] = '\0';
        p[i] = utf8_first_invalid(b, len) < len ||
               (i > 0 && edge_alnum(t, md, ids[i], 0) && edge_alnum(t, md, ids[i - 1], 1));
    }
    pcre2_match_data_free(md);
    if (s != ECC_OK) {
        ecc_tokenizer_display_free(d, n);
        free(p);
        return s;
    }
    *display = d;
    *partial = p;
    return ECC_OK;
}
