/* Reading a batch's prompts file (host/jobs/batch.h): one request per JSONL
 * line; a line that cannot run still gives an item, with its error. */
#define _GNU_SOURCE
#include "jobs/batch.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/manifest.h"
#include "util.h"

#define MAX_PROMPTS_FILE ((size_t)1 << 32) /* 4 GiB of JSONL */
#define MAX_LINE ((size_t)64 << 20)        /* one request, as --prompt-file allows */

/* ---- reading the prompts ------------------------------------------------------------ */

int ecc_batch_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 200 || id[0] == '.')
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return 0;
    return 1;
}

uint64_t ecc_batch_id_hash(const char *id)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

int ecc_batch_shard_of(const char *id, int n) { return n > 1 ? (int)(ecc_batch_id_hash(id) % (uint64_t)n) : 0; }

static char *fmt_error(const char *fmt, const char *arg)
{
    char buf[512];
    snprintf(buf, sizeof buf, fmt, arg);
    return strdup(buf);
}

/* A copy of the line in which each NUL character (a raw zero byte, or the
 * escape \u0000) becomes U+0001, or NULL when the line has none (*oom set
 * when the copy could not be made). cJSON cuts a string at a NUL: a field
 * that differs between the parses of the line and of this copy had one. */
static char *nul_free_copy(const char *text, size_t len, int *oom)
{
    char *c = NULL;
    for (size_t i = 0; i < len; i++) {
        int raw = text[i] == '\0', esc = text[i] == '\\' && i + 5 < len && !memcmp(text + i + 1, "u0000", 5);
        if (!raw && !esc) {
            i += text[i] == '\\'; /* an escape pair: in \\u0000, \\ is a backslash and u0000 text */
            continue;
        }
        if (!c) {
            if (!(c = malloc(len))) {
                *oom = 1;
                return NULL;
            }
            memcpy(c, text, len);
        }
        if (raw)
            c[i] = 1;
        else
            c[i + 5] = '1', i += 5;
    }
    return c;
}

/* Was the string field key cut at a NUL? */
static int cut_at_nul(const cJSON *j, const cJSON *alt, const char *key)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key), *b = cJSON_GetObjectItemCaseSensitive(alt, key);
    return cJSON_IsString(a) && cJSON_IsString(b) && strcmp(a->valuestring, b->valuestring) != 0;
}

int ecc_batch_parse_line(ecc_batch_item *it, const char *text, size_t len, int line)
{
    memset(it, 0, sizeof *it);
    it->line = line;
    it->max_new_tokens = -1;
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r'))
        i++;
    if (i == len)
        return 0;
    char buf[96];
    if (len > MAX_LINE) { /* not parsed: cJSON would hold a copy of every string in it */
        ecc_manifest_line_id(buf, sizeof buf, line);
        it->id = strdup(buf);
        snprintf(buf, sizeof buf, "the line is %zu bytes, more than the %zu allowed", len, MAX_LINE);
        it->error = strdup(buf);
        return 1;
    }
    int oom = 0;
    char *alt_text = nul_free_copy(text, len, &oom);
    cJSON *j = cJSON_ParseWithLength(text, len), *alt = alt_text ? cJSON_ParseWithLength(alt_text, len) : NULL;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    const cJSON *co = cJSON_GetObjectItemCaseSensitive(j, "continuation");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(j, "max_new_tokens");
    int id_cut = cut_at_nul(j, alt, "id");
    if (cJSON_IsString(id) && !id_cut && ecc_batch_id_ok(id->valuestring))
        it->id = strdup(id->valuestring);
    if (oom)
        it->error = strdup("out of memory reading the line");
    else if (!j || !cJSON_IsObject(j))
        it->error = strdup("not a JSON object");
    else if (!cJSON_IsString(id))
        it->error = strdup("no \"id\" string");
    else if (id_cut)
        it->error = strdup("the id contains a NUL character (\\u0000)");
    else if (!it->id)
        it->error = fmt_error("id \"%.60s\" cannot name a directory: use 1-200 letters, digits, '.', '-' or '_', "
                              "not starting with '.'", id->valuestring);
    else if (!cJSON_IsString(pr))
        it->error = strdup("no \"prompt\" string");
    else if (cut_at_nul(j, alt, "prompt") || cut_at_nul(j, alt, "continuation"))
        it->error = fmt_error("the %s contains a NUL character (\\u0000), which no tokenizer input can hold: remove it",
                              cut_at_nul(j, alt, "prompt") ? "prompt" : "continuation");
    else if (co && !cJSON_IsString(co) && !cJSON_IsNull(co))
        it->error = strdup("\"continuation\" must be a string");
    else if (mx && !cJSON_IsNull(mx) &&
             (!cJSON_IsNumber(mx) || mx->valuedouble < 0 || mx->valuedouble > (1 << 20) ||
              mx->valuedouble != (double)(int)mx->valuedouble))
        it->error = strdup("\"max_new_tokens\" must be an integer from 0 to 1048576");
    else {
        it->prompt = strdup(pr->valuestring);
        if (cJSON_IsString(co))
            it->continuation = strdup(co->valuestring);
        if (cJSON_IsNumber(mx))
            it->max_new_tokens = mx->valueint;
    }
    if (!it->id) { /* "line:N": no real id can equal it */
        ecc_manifest_line_id(buf, sizeof buf, line);
        it->id = strdup(buf);
    }
    cJSON_Delete(j);
    cJSON_Delete(alt);
    free(alt_text);
    return 1;
}

static int by_id(const void *a, const void *b)
{
    const ecc_batch_item *x = *(ecc_batch_item *const *)a, *y = *(ecc_batch_item *const *)b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

ecc_status ecc_batch_read(ecc_batch_items *out, const char *path)
{
    memset(out, 0, sizeof *out);
    char *data;
    size_t len;
    ECC_TRY(ecc_read_file(path, MAX_PROMPTS_FILE, &data, &len));
    size_t cap = 64;
    out->items = ecc_malloc(cap * sizeof *out->items, "the prompts");
    if (!out->items) {
        free(data);
        return ECC_ERR_NOMEM;
    }
    int line = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(data + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (data + at)) : len - at;
        line++;
        if (out->n == (int)cap) {
            void *p = realloc(out->items, (cap *= 2) * sizeof *out->items);
            if (!p) {
                free(data);
                ecc_batch_items_free(out);
                return ecc_fail(ECC_ERR_NOMEM, "out of memory reading %s", path);
            }
            out->items = p;
        }
        if (ecc_batch_parse_line(&out->items[out->n], data + at, n, line))
            out->n++;
        at += n + 1;
    }
    free(data);
    /* a repeated id: the later lines fail */
    ecc_batch_item **idx = ecc_malloc(sizeof *idx * (size_t)(out->n ? out->n : 1), "the prompts");
    if (!idx) {
        ecc_batch_items_free(out);
        return ECC_ERR_NOMEM;
    }
    for (int i = 0; i < out->n; i++)
        idx[i] = &out->items[i];
    qsort(idx, (size_t)out->n, sizeof *idx, by_id);
    for (int i = 1; i < out->n; i++)
        if (!strcmp(idx[i]->id, idx[i - 1]->id) && !idx[i]->error) {
            int first = i - 1;
            while (first > 0 && !strcmp(idx[first - 1]->id, idx[i]->id))
                first--;
            char buf[96];
            snprintf(buf, sizeof buf, "duplicate id (first on line %d)", idx[first]->line);
            idx[i]->error = strdup(buf);
        }
    free(idx);
    return ECC_OK;
}

void ecc_batch_items_free(ecc_batch_items *b)
{
    for (int i = 0; i < b->n; i++) {
        free(b->items[i].id);
        free(b->items[i].prompt);
        free(b->items[i].continuation);
        free(b->items[i].error);
    }
    free(b->items);
    memset(b, 0, sizeof *b);
}
