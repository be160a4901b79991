/* GPT-2 byte-level BPE tokenizer (see tokenizer.h).
 *
 * Tokens are stored as raw bytes (the byte-to-unicode map undone). Encoding:
 * split out added/special tokens (leftmost-longest), pre-tokenise each other
 * stretch with GPT-2's pattern, map each piece's bytes to the 256 byte-level
 * symbols and merge pairs lowest rank first, ties leftmost, the way Hugging
 * Face's Rust BPE does (a min-heap of (rank, position) over a linked list of
 * symbols, stale entries skipped), so long words cost O(n log n). Files come
 * from strangers: sizes, counts and ids are bounded and checked. */
#define _GNU_SOURCE /* memmem */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_FILE_BYTES ((size_t)64 << 20) /* vocab.json, merges.txt, tokenizer.json */
#define MAX_ENTRIES (1 << 22)             /* vocabulary entries, merges */
#define MAX_ID (1 << 24)                  /* ids lie in [0, MAX_ID) */
#define MAX_ADDED (1 << 16)               /* added (special) tokens */
#define NO_TOKEN UINT32_MAX               /* tok_off of an id no token has */
#define N_SYMBOLS 324                     /* the byte map's code points are < U+0144 */
#define SHOW 60                           /* bytes of a token shown in messages */

/* GPT-2's pattern with \s spelled out as Unicode's White_Space, which is what
 * Python's regex and Oniguruma match; PCRE2's \s also matches U+180E. */
#define WS "\\t\\n\\x0B\\f\\r\\x20\\x85\\xA0\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS
                                   "]+(?![^" WS "])|[" WS "]+";
static const char EOT_TEXT[] = "<|endoftext|>";

/* ---- hash tables (open addressing, linear probing, capacity >= 2 x entries) ---- */

typedef struct str_entry {
    const char *s; /* NULL: empty slot; points into a parsed JSON tree */
    size_t len;
    int32_t id;
} str_entry;
typedef struct str_table {
    str_entry *e;
    uint64_t mask;
} str_table;

typedef struct pair_entry {
    uint64_t key; /* left << 32 | right; UINT64_MAX: empty slot */
    uint32_t rank;
    int32_t id; /* the merged token */
} pair_entry;
typedef struct pair_table {
    pair_entry *e;
    uint64_t mask;
} pair_table;

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

static ecc_status str_table_init(str_table *h, uint64_t n)
{
    uint64_t cap = table_cap(n);
    h->e = ecc_calloc(cap, sizeof *h->e, "a token table");
    h->mask = cap - 1;
    return h->e ? ECC_OK : ECC_ERR_NOMEM;
}

static str_entry *str_slot(const str_table *h, const char *s, size_t len)
{
    for (uint64_t i = hash_bytes(s, len) & h->mask;; i = (i + 1) & h->mask) {
        str_entry *e = &h->e[i];
        if (!e->s || (e->len == len && memcmp(e->s, s, len) == 0))
            return e;
    }
}

/* The id of a string, or -1. */
static int32_t str_get(const str_table *h, const char *s, size_t len)
{
    const str_entry *e = h->e ? str_slot(h, s, len) : NULL;
    return e && e->s ? e->id : -1;
}

/* 0, or 1 when the string is already there. */
static int str_put(str_table *h, const char *s, size_t len, int32_t id)
{
    str_entry *e = str_slot(h, s, len);
    if (e->s)
        return 1;
    *e = (str_entry){s, len, id};
    return 0;
}

static ecc_status pair_table_init(pair_table *h, uint64_t n)
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

static pair_entry *pair_slot(const pair_table *h, int32_t a, int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint64_t i = hash_u64(key) & h->mask;; i = (i + 1) & h->mask)
        if (h->e[i].key == key || h->e[i].key == UINT64_MAX)
            return &h->e[i];
}

static const pair_entry *pair_get(const pair_table *h, int32_t a, int32_t b)
{
    const pair_entry *e = pair_slot(h, a, b);
    return e->key == UINT64_MAX ? NULL : e;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* The sequence at s[0..n), n >= 1: its length (1-4) when valid, else minus the
 * length of its maximal invalid subpart (Unicode's "substitution of maximal
 * subparts", which Python's errors="replace" follows). */
static int utf8_step(const uint8_t *s, size_t n)
{
    uint8_t c = s[0], lo = 0x80, hi = 0xBF;
    int need;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF)
        need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return -1;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n || s[k] < lo || s[k] > hi)
            return -k;
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

/* Offset of the first invalid byte, or n. */
static size_t utf8_first_invalid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int k = utf8_step(s + i, n - i);
        if (k < 0)
            return i;
        i += (size_t)k;
    }
    return n;
}

/* in[0..n) -> out (room for 3n bytes), invalid subparts as U+FFFD; returns the length. */
static size_t utf8_repair(char *out, const uint8_t *in, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int k = utf8_step(in + i, n - i);
        if (k > 0) {
            memcpy(out + o, in + i, (size_t)k);
            o += (size_t)k, i += (size_t)k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3, i += (size_t)-k;
        }
    }
    return o;
}

/* ---- the tokenizer -------------------------------------------------------- */

typedef struct special {
    char *text; /* what is matched in the input */
    size_t len;
    int32_t id;
} special;

struct ecc_tokenizer {
    int n_vocab;                 /* largest id + 1 */
    int32_t eot;                 /* <|endoftext|>, or -1 */
    uint32_t *tok_off, *tok_len; /* [n_vocab] raw bytes of each id in pool */
    uint8_t *pool;
    uint64_t pool_used;
    int32_t byte_id[256];     /* the single-byte symbol of each byte */
    pair_table merges;        /* (left, right) -> (rank, merged id) */
    special *specials;        /* split out of the text before pre-tokenisation */
    int n_specials;
    pcre2_code *re;           /* GPT-2's pre-tokenisation pattern */
    pcre2_code *re_alnum;     /* one letter or digit (partial flags) */
    uint16_t cp_of_byte[256]; /* GPT-2's bytes_to_unicode */
    int16_t byte_of_cp[N_SYMBOLS];
};

static void init_byte_map(ecc_tokenizer *t)
{
    int extra = 0;
    for (int cp = 0; cp < N_SYMBOLS; cp++)
        t->byte_of_cp[cp] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        t->cp_of_byte[b] = (uint16_t)(printable ? b : 256 + extra++);
        t->byte_of_cp[t->cp_of_byte[b]] = (int16_t)b;
    }
}

/* Undo the byte map: 1 and the bytes in out (room for len), or 0 when a
 * character is not one of the 256 symbols. */
static int unmap_token(const ecc_tokenizer *t, uint8_t *out, size_t *n_out, const char *s, size_t len)
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
        if (cp >= N_SYMBOLS || t->byte_of_cp[cp] < 0)
            return 0;
        out[o++] = (uint8_t)t->byte_of_cp[cp];
    }
    *n_out = o;
    return 1;
}

void ecc_tokenizer_free(ecc_tokenizer *t)
{
    if (!t)
        return;
    free(t->tok_off);
    free(t->tok_len);
    free(t->pool);
    free(t->merges.e);
    for (int i = 0; i < t->n_specials; i++)
        free(t->specials[i].text);
    free(t->specials);
    pcre2_code_free(t->re);
    pcre2_code_free(t->re_alnum);
    free(t);
}

/* ---- loading -------------------------------------------------------------- */

typedef struct loader {
    ecc_tokenizer *t;
    const char *path;    /* the file messages name */
    str_table names;     /* model vocabulary: token string (byte-mapped) -> id */
    str_table added;     /* added tokens: content -> id */
    char *scratch;       /* a + b of a merge */
    size_t scratch_cap;
} loader;

static void loader_free(loader *L)
{
    free(L->names.e);
    free(L->added.e);
    free(L->scratch);
}

static ecc_status parse_json_file(cJSON **out, const char *path)
{
    char *data;
    size_t len;
    *out = NULL;
    ECC_TRY(ecc_read_file(path, MAX_FILE_BYTES, &data, &len));
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    size_t at = end ? (size_t)(end - data) : 0;
    free(data);
    if (!*out)
        return ecc_fail(ECC_ERR_FORMAT, "%s: invalid JSON near byte %zu", path, at);
    return ECC_OK;
}

/* An id: an integer in [0, MAX_ID). */
static int json_id(const cJSON *v, int32_t *id)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < MAX_ID) ||
        v->valuedouble != (double)(int32_t)v->valuedouble)
        return 0;
    *id = (int32_t)v->valuedouble;
    return 1;
}

/* Give id its bytes: the byte map undone, or (raw_ok, added tokens whose
 * characters are not all byte symbols) the string itself, as HF's decoder does. */
static ecc_status set_token(loader *L, int32_t id, const char *s, int raw_ok)
{
    ecc_tokenizer *t = L->t;
    size_t len = strlen(s), n;
    if (t->tok_off[id] != NO_TOKEN)
        return ecc_fail(ECC_ERR_FORMAT, "%s: id %d is given to two tokens (one is '%.*s')", L->path,
                        (int)id, SHOW, s);
    uint8_t *dst = t->pool + t->pool_used;
    if (!unmap_token(t, dst, &n, s, len)) {
        if (!raw_ok)
            return ecc_fail(ECC_ERR_FORMAT,
                            "%s: token '%.*s' (id %d) has characters outside GPT-2's byte alphabet",
                            L->path, SHOW, s, (int)id);
        memcpy(dst, s, len);
        n = len;
    }
    t->tok_off[id] = (uint32_t)t->pool_used;
    t->tok_len[id] = (uint32_t)n;
    t->pool_used += n;
    return ECC_OK;
}

/* The "id" and "content" of an added token. */
static ecc_status added_fields(const loader *L, const cJSON *a, int i, int32_t *id, const char **content)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
    if (!json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), id) || !cJSON_IsString(c) || !c->valuestring[0])
        return ecc_fail(ECC_ERR_FORMAT, "%s: added_tokens[%d] needs an \"id\" in [0, %d) and a non-empty \"content\"",
                        L->path, i, MAX_ID);
    *content = c->valuestring;
    return ECC_OK;
}

/* Size the id arrays and the byte pool from the vocabulary and added tokens. */
static ecc_status size_vocab(loader *L, const cJSON *vocab, const cJSON *added)
{
    int32_t max_id = -1, id;
    uint64_t bytes = 0;
    int n = 0;
    const char *content;
    const cJSON *v;
    cJSON_ArrayForEach(v, vocab)
    {
        if (++n > MAX_ENTRIES)
            return ecc_fail(ECC_ERR_FORMAT, "%s: more than %d tokens", L->path, MAX_ENTRIES);
        if (!json_id(v, &id))
            return ecc_fail(ECC_ERR_FORMAT, "%s: token '%.*s' has an id that is not an integer in [0, %d)",
                            L->path, SHOW, v->string, MAX_ID);
        max_id = ECC_MAX(max_id, id);
        bytes += strlen(v->string);
    }
    int i = 0;
    cJSON_ArrayForEach(v, added)
    {
        if (i >= MAX_ADDED)
            return ecc_fail(ECC_ERR_FORMAT, "%s: more than %d added tokens", L->path, MAX_ADDED);
        ECC_TRY(added_fields(L, v, i++, &id, &content));
        max_id = ECC_MAX(max_id, id);
        bytes += strlen(content);
    }
    if (max_id < 0)
        return ecc_fail(ECC_ERR_FORMAT, "%s: the vocabulary is empty", L->path);
    ecc_tokenizer *t = L->t;
    t->n_vocab = max_id + 1;
    t->tok_off = ecc_malloc((size_t)t->n_vocab * sizeof *t->tok_off, "token offsets");
    t->tok_len = ecc_calloc((size_t)t->n_vocab, sizeof *t->tok_len, "token lengths");
    t->pool = ecc_malloc(bytes, "token bytes");
    if (!t->tok_off || !t->tok_len || !t->pool)
        return ECC_ERR_NOMEM;
    memset(t->tok_off, 0xFF, (size_t)t->n_vocab * sizeof *t->tok_off);
    return str_table_init(&L->names, (uint64_t)n);
}

static ecc_status add_special(ecc_tokenizer *t, const char *content, int32_t id)
{
    special *s = &t->specials[t->n_specials];
    s->text = ecc_strdup(content);
    if (!s->text)
        return ECC_ERR_NOMEM;
    s->len = strlen(content);
    s->id = id;
    t->n_specials++;
    return ECC_OK;
}

/* Read the vocabulary (object token -> id) and the added tokens (NULL for
 * vocab.json: then <|endoftext|> alone is special, as GPT2Tokenizer does). */
static ecc_status read_vocab(loader *L, const cJSON *vocab, const cJSON *added)
{
    ecc_tokenizer *t = L->t;
    int32_t id;
    int n_added = cJSON_GetArraySize(added);
    const char *content;
    const cJSON *v;
    if (!cJSON_IsObject(vocab))
        return ecc_fail(ECC_ERR_FORMAT, "%s: the vocabulary is not a JSON object", L->path);
    ECC_TRY(size_vocab(L, vocab, added));
    ECC_TRY(str_table_init(&L->added, (uint64_t)n_added));
    t->specials = ecc_calloc((size_t)n_added + 1, sizeof *t->specials, "special tokens");
    if (!t->specials)
        return ECC_ERR_NOMEM;
    int i = 0;
    cJSON_ArrayForEach(v, added)
    {
        ECC_TRY(added_fields(L, v, i++, &id, &content));
        if (str_put(&L->added, content, strlen(content), id))
            return ecc_fail(ECC_ERR_FORMAT, "%s: added token '%.*s' appears twice", L->path, SHOW, content);
    }
    cJSON_ArrayForEach(v, vocab)
    {
        json_id(v, &id);
        if (str_put(&L->names, v->string, strlen(v->string), id))
            return ecc_fail(ECC_ERR_FORMAT, "%s: token '%.*s' appears twice", L->path, SHOW, v->string);
        ECC_TRY(set_token(L, id, v->string, str_get(&L->added, v->string, strlen(v->string)) == id));
    }
    i = 0;
    cJSON_ArrayForEach(v, added)
    {
        ECC_TRY(added_fields(L, v, i++, &id, &content));
        if (t->tok_off[id] == NO_TOKEN)
            ECC_TRY(set_token(L, id, content, 1));
        else if (str_get(&L->names, content, strlen(content)) != id)
            return ecc_fail(ECC_ERR_FORMAT,
                            "%s: added token '%.*s' has id %d, which the vocabulary gives to another token", L->path,
                            SHOW, content, (int)id);
        ECC_TRY(add_special(t, content, id));
    }
    int32_t eot = str_get(&L->names, EOT_TEXT, strlen(EOT_TEXT));
    if (!added && eot >= 0)
        ECC_TRY(add_special(t, EOT_TEXT, eot));
    t->eot = eot >= 0 ? eot : str_get(&L->added, EOT_TEXT, strlen(EOT_TEXT));
    for (int b = 0; b < 256; b++) {
        char sym[3];
        uint16_t cp = t->cp_of_byte[b];
        size_t n = cp < 0x80 ? 1 : 2;
        sym[0] = (char)(cp < 0x80 ? cp : 0xC0 | cp >> 6);
        sym[1] = (char)(0x80 | (cp & 0x3F));
        if ((t->byte_id[b] = str_get(&L->names, sym, n)) < 0)
            return ecc_fail(ECC_ERR_FORMAT, "%s: the vocabulary lacks the byte-level symbol '%.*s' (byte 0x%02X)",
                            L->path, (int)n, sym, b);
    }
    return ECC_OK;
}

/* Add merge (a, b) with the given rank (later duplicates win, as in HF).
 * Returns 0; 1 when a, b or a+b is not in the vocabulary (named in
 * L->scratch); -1 when out of memory. */
static int add_merge(loader *L, const char *a, size_t la, const char *b, size_t lb, uint32_t rank)
{
    if (la + lb + 1 > L->scratch_cap) {
        free(L->scratch);
        L->scratch_cap = 2 * (la + lb + 1);
        if (!(L->scratch = ecc_malloc(L->scratch_cap, "a merge")))
            return L->scratch_cap = 0, -1;
    }
    memcpy(L->scratch, a, la);
    memcpy(L->scratch + la, b, lb);
    L->scratch[la + lb] = '\0';
    int32_t ia = str_get(&L->names, a, la), ib = str_get(&L->names, b, lb);
    int32_t iab = str_get(&L->names, L->scratch, la + lb);
    if (ia < 0 || ib < 0 || iab < 0) {
        if (ia < 0 || ib < 0) /* name the missing one */
            memcpy(L->scratch, ia < 0 ? a : b, ia < 0 ? la : lb), L->scratch[ia < 0 ? la : lb] = '\0';
        return 1;
    }
    pair_entry *e = pair_slot(&L->t->merges, ia, ib);
    *e = (pair_entry){(uint64_t)(uint32_t)ia << 32 | (uint32_t)ib, rank, iab};
    return 0;
}

/* merges.txt: "#version" line, then "a b" lines; blank lines ignored. */
static ecc_status read_merges_txt(loader *L, const char *path)
{
    char *data;
    size_t len;
    ECC_TRY(ecc_read_file(path, MAX_FILE_BYTES, &data, &len));
    uint64_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += data[i] == '\n';
    ecc_status s = pair_table_init(&L->t->merges, ECC_MIN(lines, (uint64_t)MAX_ENTRIES));
    uint32_t rank = 0;
    size_t line_no = 0;
    for (char *p = data, *end = data + len; s == ECC_OK && p < end;) {
        char *eol = memchr(p, '\n', (size_t)(end - p)), *q = eol ? eol : end;
        char *next = eol ? eol + 1 : end;
        line_no++;
        if (q > p && q[-1] == '\r')
            q--;
        size_t n = (size_t)(q - p);
        char *sp = memchr(p, ' ', n);
        if (n == 0 || (n >= 8 && memcmp(p, "#version", 8) == 0)) {
            /* skip */
        } else if (rank >= MAX_ENTRIES) {
            s = ecc_fail(ECC_ERR_FORMAT, "%s: more than %d merges", path, MAX_ENTRIES);
        } else if (!sp || sp == p || sp + 1 == q || memchr(sp + 1, ' ', (size_t)(q - sp - 1))) {
            s = ecc_fail(ECC_ERR_FORMAT, "%s line %zu: expected two tokens separated by one space, got '%.*s'",
                         path, line_no, SHOW, p);
        } else {
            int r = add_merge(L, p, (size_t)(sp - p), sp + 1, (size_t)(q - sp - 1), rank++);
            if (r < 0)
                s = ECC_ERR_NOMEM;
            else if (r > 0)
                s = ecc_fail(ECC_ERR_FORMAT, "%s line %zu: '%.*s' refers to '%.*s', a token not in the vocabulary",
                             path, line_no, (int)ECC_MIN(n, SHOW), p, SHOW, L->scratch);
        }
        p = next;
    }
    free(data);
    return s;
}

/* tokenizer.json model.merges: "a b" strings or [a, b] arrays. */
static ecc_status read_merges_json(loader *L, const cJSON *merges)
{
    int n = cJSON_GetArraySize(merges);
    if (!cJSON_IsArray(merges) || n > MAX_ENTRIES)
        return ecc_fail(ECC_ERR_FORMAT, "%s: model.merges must be an array of at most %d merges", L->path,
                        MAX_ENTRIES);
    ECC_TRY(pair_table_init(&L->t->merges, (uint64_t)n));
    uint32_t rank = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges)
    {
        const char *a = NULL, *b = NULL, *sp = NULL;
        size_t la = 0;
        if (cJSON_IsString(m) && (sp = strchr(m->valuestring, ' ')) && !strchr(sp + 1, ' '))
            a = m->valuestring, la = (size_t)(sp - a), b = sp + 1;
        else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                 cJSON_IsString(m->child->next))
            a = m->child->valuestring, la = strlen(a), b = m->child->next->valuestring;
        if (!a || !la || !b[0])
            return ecc_fail(ECC_ERR_FORMAT, "%s: model.merges[%u] is not \"a b\" or [\"a\", \"b\"]", L->path, rank);
        int r = add_merge(L, a, la, b, strlen(b), rank);
        if (r < 0)
            return ECC_ERR_NOMEM;
        if (r > 0)
            return ecc_fail(ECC_ERR_FORMAT, "%s: model.merges[%u] refers to '%.*s', a token not in model.vocab",
                            L->path, rank, SHOW, L->scratch);
        rank++;
    }
    return ECC_OK;
}

static ecc_status compile_patterns(ecc_tokenizer *t)
{
    int err;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
    t->re_alnum = pcre2_compile((PCRE2_SPTR) "[\\p{L}\\p{N}]", PCRE2_ZERO_TERMINATED,
                                PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &err, &at, NULL);
    if (!t->re || !t->re_alnum) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return ecc_fail(ECC_ERR_UNSUPPORTED, "PCRE2 cannot compile GPT-2's pattern: %s", (char *)msg);
    }
    (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* without JIT, the interpreter runs */
    return ECC_OK;
}

static ecc_status tokenizer_new(ecc_tokenizer **out, loader *L, const char *path)
{
    *out = NULL;
    *L = (loader){0};
    L->path = path;
    L->t = ecc_calloc(1, sizeof *L->t, "a tokenizer");
    if (!L->t)
        return ECC_ERR_NOMEM;
    init_byte_map(L->t);
    return compile_patterns(L->t);
}

static ecc_status tokenizer_done(ecc_tokenizer **out, loader *L, ecc_status s)
{
    loader_free(L);
    if (s != ECC_OK)
        ecc_tokenizer_free(L->t);
    else
        *out = L->t;
    return s;
}

ecc_status ecc_tokenizer_load_bpe(ecc_tokenizer **out, const char *vocab_json_path, const char *merges_txt_path)
{
    loader L;
    cJSON *vocab = NULL;
    ecc_status s = tokenizer_new(out, &L, vocab_json_path);
    if (s == ECC_OK)
        s = parse_json_file(&vocab, vocab_json_path);
    if (s == ECC_OK)
        s = read_vocab(&L, vocab, NULL);
    if (s == ECC_OK)
        s = read_merges_txt(&L, merges_txt_path);
    s = tokenizer_done(out, &L, s);
    cJSON_Delete(vocab);
    return s;
}

/* Reject tokenizer.json settings that change GPT-2's behaviour. */
static ecc_status check_json_settings(const char *path, const cJSON *root, const cJSON *model)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *pre_type = cJSON_GetObjectItemCaseSensitive(pre, "type");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
    const char *why = NULL;
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        why = "model.type is not BPE";
    else if (norm && !cJSON_IsNull(norm))
        why = "it has a normalizer";
    else if (!cJSON_IsString(pre_type) || strcmp(pre_type->valuestring, "ByteLevel") != 0)
        why = "pre_tokenizer is not ByteLevel";
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")) ||
             cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pre, "use_regex")))
        why = "pre_tokenizer sets add_prefix_space or clears use_regex";
    else if ((cJSON_IsString(prefix) && prefix->valuestring[0]) ||
             (cJSON_IsString(suffix) && suffix->valuestring[0]) ||
             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges")))
        why = "model sets a subword prefix or suffix, or ignore_merges";
    if (why)
        return ecc_fail(ECC_ERR_UNSUPPORTED, "%s: not a GPT-2 byte-level BPE tokenizer: %s", path, why);
    return ECC_OK;
}

ecc_status ecc_tokenizer_load_json(ecc_tokenizer **out, const char *tokenizer_json_path)
{
    loader L;
    cJSON *root = NULL;
    const char *path = tokenizer_json_path;
    ecc_status s = tokenizer_new(out, &L, path);
    if (s == ECC_OK)
        s = parse_json_file(&root, path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (s == ECC_OK && (!cJSON_IsObject(model) || (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))))
        s = ecc_fail(ECC_ERR_FORMAT, "%s: expected an object \"model\" and an array \"added_tokens\"", path);
    if (s == ECC_OK)
        s = check_json_settings(path, root, model);
    if (s == ECC_OK)
        s = read_vocab(&L, cJSON_GetObjectItemCaseSensitive(model, "vocab"), cJSON_IsArray(added) ? added : NULL);
    if (s == ECC_OK)
        s = read_merges_json(&L, cJSON_GetObjectItemCaseSensitive(model, "merges"));
    s = tokenizer_done(out, &L, s);
    cJSON_Delete(root);
    return s;
}

ecc_status ecc_tokenizer_load_dir(ecc_tokenizer **out, const char *dir)
{
    char *tj = ecc_path_join(dir, "tokenizer.json"), *vj = ecc_path_join(dir, "vocab.json");
    char *mt = ecc_path_join(dir, "merges.txt");
    ecc_status s;
    *out = NULL;
    if (!tj || !vj || !mt)
        s = ECC_ERR_NOMEM;
    else if (ecc_file_exists(tj))
        s = ecc_tokenizer_load_json(out, tj);
    else if (ecc_file_exists(vj) && ecc_file_exists(mt))
        s = ecc_tokenizer_load_bpe(out, vj, mt);
    else
        s = ecc_fail(ECC_ERR_IO, "%s: no tokenizer found: expected tokenizer.json, or vocab.json and merges.txt", dir);
    free(tj);
    free(vj);
    free(mt);
    return s;
}

int ecc_tokenizer_n_vocab(const ecc_tokenizer *t) { return t->n_vocab; }
int32_t ecc_tokenizer_eot(const ecc_tokenizer *t) { return t->eot; }

const uint8_t *ecc_tokenizer_token_bytes(const ecc_tokenizer *t, int32_t id, size_t *len)
{
    *len = 0;
    if (id < 0 || id >= t->n_vocab || t->tok_off[id] == NO_TOKEN)
        return NULL;
    *len = t->tok_len[id];
    return t->pool + t->tok_off[id];
}

/* ---- encoding ------------------------------------------------------------- */

typedef struct heap_item {
    uint32_t rank, pos;
    int32_t id;
} heap_item;

typedef struct encoder {
    const ecc_tokenizer *t;
    int32_t *out; /* ids so far; room for one per input byte */
    int n;
    pcre2_match_data *md;
    int32_t *sym, *prev, *next; /* [cap] one word's symbols (sym -1: merged away) */
    heap_item *heap;            /* [3 cap] pending merges, min (rank, pos) first */
    size_t cap, heap_n;
} encoder;

static int heap_less(const heap_item *a, const heap_item *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(encoder *e, heap_item it)
{
    size_t i = e->heap_n++;
    while (i > 0 && heap_less(&it, &e->heap[(i - 1) / 2])) {
        e->heap[i] = e->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->heap[i] = it;
}

static heap_item heap_pop(encoder *e)
{
    heap_item top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_less(&e->heap[c + 1], &e->heap[c]))
            c++;
        if (!heap_less(&e->heap[c], &last))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0)
        e->heap[i] = last;
    return top;
}

/* Queue the merge of the symbol at pos with its right neighbour, if any. */
static void push_pair(encoder *e, int32_t pos)
{
    const pair_entry *m = pair_get(&e->t->merges, e->sym[pos], e->sym[e->next[pos]]);
    if (m)
        heap_push(e, (heap_item){m->rank, (uint32_t)pos, m->id});
}

static ecc_status grow_word(encoder *e, size_t n)
{
    size_t cap = ECC_MAX(n, 2 * e->cap);
    free(e->sym), free(e->prev), free(e->next), free(e->heap);
    e->sym = ecc_malloc(cap * sizeof *e->sym, "a word");
    e->prev = ecc_malloc(cap * sizeof *e->prev, "a word");
    e->next = ecc_malloc(cap * sizeof *e->next, "a word");
    e->heap = ecc_malloc(3 * cap * sizeof *e->heap, "a word's merges");
    e->cap = cap;
    return e->sym && e->prev && e->next && e->heap ? ECC_OK : ECC_ERR_NOMEM;
}

/* BPE one pre-tokenised piece w[0..n) and append its ids. */
static ecc_status bpe_word(encoder *e, const uint8_t *w, size_t n)
{
    const ecc_tokenizer *t = e->t;
    if (n == 1) {
        e->out[e->n++] = t->byte_id[w[0]];
        return ECC_OK;
    }
    if (n > e->cap)
        ECC_TRY(grow_word(e, n));
    for (size_t i = 0; i < n; i++) {
        e->sym[i] = t->byte_id[w[i]];
        e->prev[i] = (int32_t)i - 1;
        e->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(e, (int32_t)i);
    while (e->heap_n > 0) {
        heap_item m = heap_pop(e);
        int32_t pos = (int32_t)m.pos, right = e->next[pos];
        if (e->sym[pos] < 0 || right < 0) /* stale: merged away, or no right neighbour */
            continue;
        const pair_entry *now = pair_get(&t->merges, e->sym[pos], e->sym[right]);
        if (!now || now->id != m.id) /* stale: a neighbour changed (HF compares the new id) */
            continue;
        e->sym[pos] = m.id;
        e->sym[right] = -1;
        e->next[pos] = e->next[right];
        if (e->next[pos] >= 0)
            e->prev[e->next[pos]] = pos;
        if (e->prev[pos] >= 0)
            push_pair(e, e->prev[pos]);
        if (e->next[pos] >= 0)
            push_pair(e, pos);
    }
    for (int32_t i = 0; i >= 0; i = e->next[i])
        e->out[e->n++] = e->sym[i];
    return ECC_OK;
}

/* Pre-tokenise s[0..len) (valid UTF-8, no special tokens) and BPE each piece.
 * Text the pattern skips becomes a piece of its own, as HF's Isolated split. */
static ecc_status encode_segment(encoder *e, const uint8_t *s, size_t len, size_t base)
{
    size_t piece = 0, at = 0;
    while (at < len) {
        int rc = pcre2_match(e->t->re, s, len, at, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ecc_fail(ECC_ERR_INPUT, "text: pre-tokenisation failed at byte %zu: %s", base + at, (char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        if (ov[1] <= ov[0]) { /* empty match: step over one character */
            int k = utf8_step(s + ov[0], len - ov[0]);
            at = ov[0] + (size_t)(k > 0 ? k : 1);
            continue;
        }
        if (ov[0] > piece)
            ECC_TRY(bpe_word(e, s + piece, ov[0] - piece));
        ECC_TRY(bpe_word(e, s + ov[0], ov[1] - ov[0]));
        piece = at = ov[1];
    }
    return piece < len ? bpe_word(e, s + piece, len - piece) : ECC_OK;
}

/* Split out special tokens (leftmost, then longest) and encode the rest.
 * next_at[k]: where special k next occurs at or after the cursor (len: never). */
static ecc_status encode_text(encoder *e, const uint8_t *s, size_t len, size_t *next_at)
{
    const ecc_tokenizer *t = e->t;
    size_t pos = 0;
    for (int k = 0; k < t->n_specials; k++) {
        const uint8_t *p = memmem(s, len, t->specials[k].text, t->specials[k].len);
        next_at[k] = p ? (size_t)(p - s) : len;
    }
    for (;;) {
        int best = -1;
        for (int k = 0; k < t->n_specials; k++)
            if (next_at[k] < len && (best < 0 || next_at[k] < next_at[best] ||
                                     (next_at[k] == next_at[best] && t->specials[k].len > t->specials[best].len)))
                best = k;
        size_t start = best < 0 ? len : next_at[best];
        ECC_TRY(encode_segment(e, s + pos, start - pos, pos));
        if (best < 0)
            return ECC_OK;
        e->out[e->n++] = t->specials[best].id;
        pos = start + t->specials[best].len;
        for (int k = 0; k < t->n_specials; k++) {
            if (next_at[k] < pos) {
                const uint8_t *p = memmem(s + pos, len - pos, t->specials[k].text, t->specials[k].len);
                next_at[k] = p ? (size_t)(p - s) : len;
            }
        }
    }
}

ecc_status ecc_tokenizer_encode(const ecc_tokenizer *t, const char *text, size_t len, int32_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    if (!text && len)
        return ecc_fail(ECC_ERR_INPUT, "text: NULL with a length of %zu", len);
    if (len > INT_MAX)
        return ecc_fail(ECC_ERR_INPUT, "text: %zu bytes is more than the %d allowed", len, INT_MAX);
    if (!text)
        text = "";
    size_t bad = utf8_first_invalid((const uint8_t *)text, len);
    if (bad < len)
        return ecc_fail(ECC_ERR_INPUT, "invalid UTF-8 at byte %zu (0x%02X); eccolo reads UTF-8 text", bad, (unsigned)(uint8_t)text[bad]);
    encoder e = {.t = t};
    e.out = ecc_malloc(ECC_MAX(len, 1) * sizeof *e.out, "token ids");
    e.md = pcre2_match_data_create_from_pattern(t->re, NULL);
    size_t *next_at = ecc_calloc((size_t)t->n_specials + 1, sizeof *next_at, "special token positions");
    ecc_status s = !e.out || !next_at ? ECC_ERR_NOMEM
                   : !e.md           ? ecc_fail(ECC_ERR_NOMEM, "out of memory for PCRE2 match data")
                                     : encode_text(&e, (const uint8_t *)text, len, next_at);
    pcre2_match_data_free(e.md);
    free(next_at), free(e.sym), free(e.prev), free(e.next), free(e.heap);
    if (s != ECC_OK) {
        free(e.out);
        return s;
    }
    *ids = e.out;
    *n = e.n;
    return ECC_OK;
}

/* ---- decoding and display ------------------------------------------------- */

static ecc_status check_id(const ecc_tokenizer *t, const int32_t *ids, int i)
{
    if (ids[i] < 0 || ids[i] >= t->n_vocab || t->tok_off[ids[i]] == NO_TOKEN)
        return ecc_fail(ECC_ERR_INPUT, "ids[%d] = %d is not a token id (the vocabulary has %d)", i, (int)ids[i],
                        t->n_vocab);
    return ECC_OK;
}

ecc_status ecc_tokenizer_decode(const ecc_tokenizer *t, const int32_t *ids, int n, char **text, size_t *len)
{
    uint64_t total = 0;
    *text = NULL;
    if (len)
        *len = 0;
    if (n < 0 || (!ids && n > 0))
        return ecc_fail(ECC_ERR_INPUT, "decode: %d ids", n);
    for (int i = 0; i < n; i++) {
        ECC_TRY(check_id(t, ids, i));
        total += t->tok_len[ids[i]];
    }
    uint8_t *raw = ecc_malloc(total, "decoded bytes");
    char *out = ecc_malloc(3 * total + 1, "decoded text");
    if (!raw || !out) {
        free(raw), free(out);
        return ECC_ERR_NOMEM;
    }
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        memcpy(raw + o, t->pool + t->tok_off[ids[i]], t->tok_len[ids[i]]);
        o += t->tok_len[ids[i]];
    }
    size_t m = utf8_repair(out, raw, o);
    out[m] = '\0';
    free(raw);
    *text = out;
    if (len)
        *len = m;
    return ECC_OK;
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
