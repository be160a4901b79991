/* The pre-tokenizers of tokenizer.json (ByteLevel, Split, Metaspace, Digits,
 * and Sequence, flattened at load time): each cuts the pieces the previous
 * one made, and the last hands its pieces to the BPE model. Cutting follows
 * tokenizers' NormalizedString::split: the pattern's matches and the text
 * between them, combined by the split behavior, empty pieces dropped. */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok.h"
#include "util.h"

typedef struct cut {
    size_t start, end;
    int match; /* a match of the pattern (before the behavior is applied); after: removed */
} cut;

typedef struct cuts {
    cut *c;
    size_t n, cap;
} cuts;

static ecc_status cut_add(cuts *l, size_t start, size_t end, int match)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        cut *p = realloc(l->c, cap * sizeof *p);
        if (!p)
            return ecc_fail(ECC_ERR_NOMEM, "out of memory splitting text");
        l->c = p;
        l->cap = cap;
    }
    l->c[l->n++] = (cut){start, end, match};
    return ECC_OK;
}

/* A match at [ms, me) after text ending at *prev (tokenizers' Pattern::find_matches). */
static ecc_status add_match(cuts *l, size_t *prev, size_t ms, size_t me)
{
    if (*prev != ms)
        ECC_TRY(cut_add(l, *prev, ms, 0));
    *prev = me;
    return cut_add(l, ms, me, 1);
}

static int is_numeric_at(const uint8_t *s, int *k) { return uni_is_numeric(utf8_get(s, k)); }

/* Matches of pre-tokenizer p in s[0..n), covering the whole text. */
static ecc_status find_matches(encoder *e, cuts *l, const tok_pre *p, const uint8_t *s, size_t n)
{
    size_t prev = 0, ms, me;
    l->n = 0;
    if (p->kind == PRE_BYTELEVEL || (p->kind == PRE_SPLIT && p->re)) {
        re_iter it = {.re = p->re, .md = e->md, .s = s, .len = n};
        int r;
        while ((r = re_next(&it, &ms, &me)) > 0)
            ECC_TRY(add_match(l, &prev, ms, me));
        if (r < 0)
            return ECC_ERR_INPUT;
    } else if (p->kind == PRE_SPLIT) {
        for (size_t at = 0;;) {
            const uint8_t *q = memmem(s + at, n - at, p->literal, p->literal_len);
            if (!q)
                break;
            ms = (size_t)(q - s), me = ms + p->literal_len;
            ECC_TRY(add_match(l, &prev, ms, me));
            at = me;
        }
    } else { /* one character at a time: Metaspace's replacement, Digits' numbers */
        for (size_t i = 0; i < n;) {
            int k;
            int hit = p->kind == PRE_DIGITS ? is_numeric_at(s + i, &k)
                                            : (k = utf8_step(s + i, n - i), (size_t)k == p->repl_len &&
                                                                                 memcmp(s + i, p->repl, p->repl_len) == 0);
            if (k < 1)
                k = 1;
            if (hit)
                ECC_TRY(add_match(l, &prev, i, i + (size_t)k));
            i += (size_t)k;
        }
    }
    if (prev != n)
        ECC_TRY(cut_add(l, prev, n, 0));
    if (p->kind == PRE_SPLIT && p->invert)
        for (size_t i = 0; i < l->n; i++)
            l->c[i].match = !l->c[i].match;
    return ECC_OK;
}

/* Apply a split behavior in place: afterwards .match means "remove". */
static void apply_behavior(cuts *l, split_behavior b)
{
    size_t m = 0;
    int prev_match = 0;
    if (b == SPLIT_REMOVED)
        return;
    if (b == SPLIT_ISOLATED) {
        for (size_t i = 0; i < l->n; i++)
            l->c[i].match = 0;
        return;
    }
    if (b == SPLIT_MERGED_NEXT) { /* fold from the right into the end of the array (w >= i), then move down */
        size_t w = l->n;
        for (size_t i = l->n; i-- > 0;) {
            cut c = l->c[i];
            if (c.match && !prev_match && w < l->n)
                l->c[w].start = c.start;
            else
                l->c[--w] = (cut){c.start, c.end, 0};
            prev_match = c.match;
        }
        memmove(l->c, l->c + w, (l->n - w) * sizeof *l->c);
        l->n -= w;
        return;
    }
    for (size_t i = 0; i < l->n; i++) { /* MERGED_PREV, CONTIGUOUS */
        cut c = l->c[i];
        int join = b == SPLIT_CONTIGUOUS ? c.match == prev_match : c.match && !prev_match;
        if (join && m > 0)
            l->c[m - 1].end = c.end;
        else
            l->c[m++] = (cut){c.start, c.end, 0};
        prev_match = c.match;
    }
    l->n = m;
}

static ecc_status stage(encoder *e, int k, const uint8_t *s, size_t n, int at_origin);

/* Split s with pre-tokenizer k and pass each piece on to stage k + 1. */
static ecc_status split_and_pass(encoder *e, int k, const uint8_t *s, size_t n, int at_origin, split_behavior b)
{
    cuts l = {0};
    ecc_status st = find_matches(e, &l, &e->t->pre[k], s, n);
    if (st == ECC_OK)
        apply_behavior(&l, b);
    for (size_t i = 0; st == ECC_OK && i < l.n; i++)
        if (!l.c[i].match && l.c[i].end > l.c[i].start)
            st = stage(e, k + 1, s + l.c[i].start, l.c[i].end - l.c[i].start, at_origin && l.c[i].start == 0);
    free(l.c);
    return st;
}

static ecc_status metaspace(encoder *e, int k, const uint8_t *s, size_t n, int at_origin)
{
    const tok_pre *p = &e->t->pre[k];
    tok_buf b = {0};
    ecc_status st = buf_reserve(&b, p->repl_len * (n + 1));
    int starts = n >= p->repl_len && memcmp(s, p->repl, p->repl_len) == 0;
    if (n > 0 && s[0] == ' ')
        starts = 1; /* the space becomes the replacement */
    if (st == ECC_OK && !starts && (p->scheme == PREPEND_ALWAYS || (p->scheme == PREPEND_FIRST && at_origin)))
        st = buf_add(&b, p->repl, p->repl_len);
    for (size_t i = 0; st == ECC_OK && i < n; i++)
        st = s[i] == ' ' ? buf_add(&b, p->repl, p->repl_len) : buf_add(&b, &s[i], 1);
    if (st == ECC_OK)
        st = p->split ? split_and_pass(e, k, b.p, b.n, at_origin, SPLIT_MERGED_NEXT)
                      : stage(e, k + 1, b.p, b.n, at_origin);
    free(b.p);
    return st;
}

static ecc_status stage(encoder *e, int k, const uint8_t *s, size_t n, int at_origin)
{
    const ecc_tokenizer *t = e->t;
    if (n == 0)
        return ECC_OK;
    if (k == t->n_pre)
        return bpe_piece(e, s, n);
    const tok_pre *p = &t->pre[k];
    switch (p->kind) {
    case PRE_BYTELEVEL:
        if (p->add_prefix_space && s[0] != ' ') {
            tok_buf b = {0};
            ecc_status st = buf_add(&b, " ", 1);
            if (st == ECC_OK)
                st = buf_add(&b, s, n);
            if (st == ECC_OK)
                st = p->use_regex ? split_and_pass(e, k, b.p, b.n, at_origin, SPLIT_ISOLATED)
                                  : stage(e, k + 1, b.p, b.n, at_origin);
            free(b.p);
            return st;
        }
        return p->use_regex ? split_and_pass(e, k, s, n, at_origin, SPLIT_ISOLATED) : stage(e, k + 1, s, n, at_origin);
    case PRE_SPLIT:
        return split_and_pass(e, k, s, n, at_origin, p->behavior);
    case PRE_METASPACE:
        return metaspace(e, k, s, n, at_origin);
    case PRE_DIGITS:
        return split_and_pass(e, k, s, n, at_origin, p->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS);
    }
    return ecc_fail(ECC_ERR_UNSUPPORTED, "pre-tokenizer %d", (int)p->kind);
}

ecc_status pretokenize(encoder *e, const uint8_t *s, size_t n, int at_origin) { return stage(e, 0, s, n, at_origin); }
