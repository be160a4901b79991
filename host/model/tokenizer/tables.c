/* Hash tables, growable buffers and GPT-2's byte map, shared by the tokenizer files. */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok.h"
#include "util.h"

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33; /* murmur3's finaliser */
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static uint64_t table_cap(uint64_t n)
{
    uint64_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    return cap;
}

ecc_status str_table_init(str_table *h, uint64_t n)
{
    uint64_t cap = table_cap(n);
    h->e = ecc_calloc(cap, sizeof *h->e, "a token table");
    h->mask = cap - 1;
    return h->e ? ECC_OK : ECC_ERR_NOMEM;
}

str_entry *str_slot(const str_table *h, const char *s, size_t len)
{
    for (uint64_t i = hash_bytes(s, len) & h->mask;; i = (i + 1) & h->mask) {
        str_entry *e = &h->e[i];
        if (!e->s || (e->len == len && memcmp(e->s, s, len) == 0))
            return e;
    }
}

int32_t str_get(const str_table *h, const char *s, size_t len)
{
    const str_entry *e = h->e ? str_slot(h, s, len) : NULL;
    return e && e->s ? e->id : -1;
}

int str_put(str_table *h, const char *s, size_t len, int32_t id)
{
    str_entry *e = str_slot(h, s, len);
    if (e->s)
        return 1;
    *e = (str_entry){s, len, id};
    return 0;
}

ecc_status pair_table_init(pair_table *h, uint64_t n)
{
    uint64_t cap = table_cap(n);
    h->e = ecc_malloc(cap * sizeof *h->e, "the merge table");
    if (!h->e)
        return ECC_ERR_NOMEM;
    for (uint64_t i = 0; i < cap; i++)
        h->e[i].key = UINT64_MAX;
    h->mask = cap - 1;
    return ECC_OK;
}

pair_entry *pair_slot(const pair_table *h, int32_t a, int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint64_t i = hash_u64(key) & h->mask;; i = (i + 1) & h->mask)
        if (h->e[i].key == key || h->e[i].key == UINT64_MAX)
            return &h->e[i];
}

const pair_entry *pair_get(const pair_table *h, int32_t a, int32_t b)
{
    if (!h->e)
        return NULL;
    const pair_entry *e = pair_slot(h, a, b);
    return e->key == UINT64_MAX ? NULL : e;
}

ecc_status buf_reserve(tok_buf *b, size_t extra)
{
    if (b->n + extra <= b->cap)
        return ECC_OK;
    size_t cap = ECC_MAX(b->n + extra, 2 * b->cap + 64);
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return ecc_fail(ECC_ERR_NOMEM, "out of memory for %zu bytes of text", cap);
    b->p = p;
    b->cap = cap;
    return ECC_OK;
}

ecc_status buf_add(tok_buf *b, const void *s, size_t n)
{
    ECC_TRY(buf_reserve(b, n));
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    return ECC_OK;
}

ecc_status ids_add(id_list *l, int32_t id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        int32_t *p = realloc(l->p, cap * sizeof *p);
        if (!p)
            return ecc_fail(ECC_ERR_NOMEM, "out of memory for %zu token ids", cap);
        l->p = p;
        l->cap = cap;
    }
    l->p[l->n++] = id;
    return ECC_OK;
}

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others
 * for U+0100 onwards in byte order. */
void tok_init_byte_map(ecc_tokenizer *t)
{
    int extra = 0;
    for (int cp = 0; cp < 324; cp++)
        t->byte_of_cp[cp] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        t->cp_of_byte[b] = (uint16_t)(printable ? b : 256 + extra++);
        t->byte_of_cp[t->cp_of_byte[b]] = (int16_t)b;
    }
}

int tok_unmap(const ecc_tokenizer *t, uint8_t *out, size_t *n_out, const char *s, size_t len)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        if (u[i] < 0x80) {
            cp = u[i++];
        } else if (u[i] >= 0xC2 && u[i] <= 0xC5 && i + 1 < len && (u[i + 1] & 0xC0) == 0x80) {
            cp = (uint32_t)(u[i] & 0x1F) << 6 | (u[i + 1] & 0x3F);
            i += 2;
        } else {
            return 0;
        }
        if (cp >= 324 || t->byte_of_cp[cp] < 0)
            return 0;
        out[o++] = (uint8_t)t->byte_of_cp[cp];
    }
    *n_out = o;
    return 1;
}
