/* Loading a tokenizer: tokenizer.json (the vocabulary, merges and added
 * tokens here; the other sections in load_pipeline.c), or GPT-2's
 * vocab.json + merges.txt. Files come from strangers: sizes, counts and ids
 * are bounded and checked, and every error names the file. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok.h"
#include "util.h"

static const char EOT_TEXT[] = "<|endoftext|>";

typedef struct loader {
    ecc_tokenizer *t;
    const char *path; /* the file messages name */
    int strict_bytes; /* vocab.json: every token must be made of GPT-2's byte symbols */
    str_table names;  /* token string (as in the file) -> id, over the parsed JSON */
    char *scratch;    /* a + b of a merge */
    size_t scratch_cap;
} loader;

void ecc_tokenizer_free(ecc_tokenizer *t)
{
    if (!t)
        return;
    free(t->str_off), free(t->str_len), free(t->str_pool), free(t->key_pool);
    free(t->tok_off), free(t->tok_len), free(t->pool);
    free(t->model.e), free(t->merges.e);
    for (int i = 0; i < t->n_added; i++)
        free(t->added[i].content), free(t->added[i].match);
    free(t->added), free(t->added_of_id);
    trie_free(&t->raw_trie), trie_free(&t->norm_trie);
    pipeline_free(t);
    pcre2_code_free(t->re_alnum), pcre2_code_free(t->re_word);
    free(t);
}

static ecc_status parse_json_file(cJSON **out, const char *path)
{
    char *data;
    size_t len;
    *out = NULL;
    ECC_TRY(ecc_read_file(path, TOK_MAX_FILE_BYTES, &data, &len));
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    size_t at = end ? (size_t)(end - data) : 0;
    free(data);
    if (!*out)
        return ecc_fail(ECC_ERR_FORMAT, "%s: invalid JSON near byte %zu", path, at);
    return ECC_OK;
}

/* An id: an integer in [0, TOK_MAX_ID). */
static int json_id(const cJSON *v, int32_t *id)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < TOK_MAX_ID) ||
        v->valuedouble != (double)(int32_t)v->valuedouble)
        return 0;
    *id = (int32_t)v->valuedouble;
    return 1;
}

static int json_flag(const cJSON *o, const char *name, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* The "id" and "content" of an added token. */
static ecc_status added_fields(const loader *L, const cJSON *a, int i, int32_t *id, const char **content)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
    if (!json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), id) || !cJSON_IsString(c) || !c->valuestring[0])
        return ecc_fail(ECC_ERR_FORMAT, "%s: added_tokens[%d] needs an \"id\" in [0, %d) and a non-empty \"content\"",
                        L->path, i, TOK_MAX_ID);
    *content = c->valuestring;
    return ECC_OK;
}

/* Size the id arrays and the string pools from the vocabulary and added tokens. */
static ecc_status size_vocab(loader *L, const cJSON *vocab, const cJSON *added)
{
    int32_t max_id = -1, id;
    uint64_t bytes = 0, vocab_bytes = 0;
    int n = 0, i = 0;
    const char *content;
    const cJSON *v;
    cJSON_ArrayForEach(v, vocab)
    {
        if (++n > TOK_MAX_ENTRIES)
            return ecc_fail(ECC_ERR_FORMAT, "%s: more than %d tokens", L->path, TOK_MAX_ENTRIES);
        if (!json_id(v, &id))
            return ecc_fail(ECC_ERR_FORMAT, "%s: token '%.*s' has an id that is not an integer in [0, %d)",
                            L->path, TOK_SHOW, v->string, TOK_MAX_ID);
        max_id = ECC_MAX(max_id, id);
        vocab_bytes += strlen(v->string);
    }
    cJSON_ArrayForEach(v, added)
    {
        if (i >= TOK_MAX_ADDED)
            return ecc_fail(ECC_ERR_FORMAT, "%s: more than %d added tokens", L->path, TOK_MAX_ADDED);
        ECC_TRY(added_fields(L, v, i++, &id, &content));
        max_id = ECC_MAX(max_id, id);
        bytes += 4 * strlen(content) + 8; /* room for a normalized form */
    }
    if (max_id < 0)
        return ecc_fail(ECC_ERR_FORMAT, "%s: the vocabulary is empty", L->path);
    bytes += vocab_bytes;
    if (bytes > UINT32_MAX)
        return ecc_fail(ECC_ERR_FORMAT, "%s: the tokens take more than 4 GiB", L->path);
    ecc_tokenizer *t = L->t;
    t->n_vocab = max_id + 1;
    t->str_off = ecc_malloc((size_t)t->n_vocab * sizeof *t->str_off, "token offsets");
    t->str_len = ecc_calloc((size_t)t->n_vocab, sizeof *t->str_len, "token lengths");
    t->added_of_id = ecc_malloc((size_t)t->n_vocab * sizeof *t->added_of_id, "added token index");
    t->str_pool = ecc_malloc(bytes + 1, "token strings");
    t->str_cap = bytes;
    t->key_pool = ecc_malloc(vocab_bytes + 1, "token bytes");
    t->added = ecc_calloc((size_t)i + 1, sizeof *t->added, "added tokens");
    if (!t->str_off || !t->str_len || !t->added_of_id || !t->str_pool || !t->key_pool || !t->added)
        return ECC_ERR_NOMEM;
    memset(t->str_off, 0xFF, (size_t)t->n_vocab * sizeof *t->str_off);
    memset(t->added_of_id, 0xFF, (size_t)t->n_vocab * sizeof *t->added_of_id);
    ECC_TRY(str_table_init(&L->names, (uint64_t)n));
    return str_table_init(&t->model, (uint64_t)n);
}

static void set_string(ecc_tokenizer *t, int32_t id, const char *s, size_t len)
{
    memcpy(t->str_pool + t->str_used, s, len);
    t->str_off[id] = (uint32_t)t->str_used;
    t->str_len[id] = (uint32_t)len;
    t->str_used += len;
}

/* One vocabulary entry: its string, and its key in the model's table. */
static ecc_status vocab_entry(loader *L, const char *s, int32_t id, int is_added)
{
    ecc_tokenizer *t = L->t;
    size_t len = strlen(s), n;
    if (t->str_off[id] != TOK_NO_TOKEN)
        return ecc_fail(ECC_ERR_FORMAT, "%s: id %d is given to two tokens (one is '%.*s')", L->path, (int)id,
                        TOK_SHOW, s);
    if (str_put(&L->names, s, len, id))
        return ecc_fail(ECC_ERR_FORMAT, "%s: token '%.*s' appears twice", L->path, TOK_SHOW, s);
    set_string(t, id, s, len);
    if (!t->byte_level) {
        str_put(&t->model, t->str_pool + t->str_off[id], len, id);
        return ECC_OK;
    }
    uint8_t *key = t->key_pool + t->key_used;
    if (!tok_unmap(t, key, &n, s, len)) {
        if (L->strict_bytes && !is_added)
            return ecc_fail(ECC_ERR_FORMAT, "%s: token '%.*s' (id %d) has characters outside GPT-2's byte alphabet",
                            L->path, TOK_SHOW, s, (int)id);
        return ECC_OK; /* BPE never makes it; it decodes as written */
    }
    t->key_used += n;
    str_put(&t->model, (const char *)key, n, id);
    return ECC_OK;
}

/* Read the vocabulary (object token -> id) and the added tokens (NULL for
 * vocab.json: then <|endoftext|> alone is special, as GPT2Tokenizer does). */
static ecc_status read_vocab(loader *L, const cJSON *vocab, const cJSON *added)
{
    ecc_tokenizer *t = L->t;
    int32_t id;
    const char *content;
    const cJSON *v;
    if (!cJSON_IsObject(vocab))
        return ecc_fail(ECC_ERR_FORMAT, "%s: the vocabulary is not a JSON object", L->path);
    ECC_TRY(size_vocab(L, vocab, added));
    str_table contents = {0};
    ECC_TRY(str_table_init(&contents, (uint64_t)cJSON_GetArraySize(added) + 1));
    ecc_status s = ECC_OK;
    int i = 0;
    cJSON_ArrayForEach(v, added)
    {
        if ((s = added_fields(L, v, i++, &id, &content)) != ECC_OK)
            break;
        if (str_put(&contents, content, strlen(content), id)) {
            s = ecc_fail(ECC_ERR_FORMAT, "%s: added token '%.*s' appears twice", L->path, TOK_SHOW, content);
            break;
        }
    }
    cJSON_ArrayForEach(v, vocab)
    {
        if (s != ECC_OK)
            break;
        json_id(v, &id);
        s = vocab_entry(L, v->string, id, str_get(&contents, v->string, strlen(v->string)) == id);
    }
    free(contents.e);
    ECC_TRY(s);
    i = 0;
    cJSON_ArrayForEach(v, added)
    {
        ECC_TRY(added_fields(L, v, i, &id, &content));
        size_t len = strlen(content);
        if (t->str_off[id] == TOK_NO_TOKEN)
            set_string(t, id, content, len);
        else if (str_get(&L->names, content, len) != id)
            return ecc_fail(ECC_ERR_FORMAT,
                            "%s: added token '%.*s' has id %d, which the vocabulary gives to another token", L->path,
                            TOK_SHOW, content, (int)id);
        tok_added *a = &t->added[t->n_added];
        int special = json_flag(v, "special", 0);
        *a = (tok_added){.content = ecc_strdup(content), .len = len, .id = id, .special = (uint8_t)special,
                         .normalized = (uint8_t)json_flag(v, "normalized", !special),
                         .lstrip = (uint8_t)json_flag(v, "lstrip", 0), .rstrip = (uint8_t)json_flag(v, "rstrip", 0),
                         .single_word = (uint8_t)json_flag(v, "single_word", 0)};
        if (!a->content)
            return ECC_ERR_NOMEM;
        t->added_of_id[id] = t->n_added++;
        i++;
    }
    if (!added && (id = str_get(&L->names, EOT_TEXT, strlen(EOT_TEXT))) >= 0) {
        tok_added *a = &t->added[t->n_added];
        *a = (tok_added){.content = ecc_strdup(EOT_TEXT), .len = strlen(EOT_TEXT), .id = id, .special = 1};
        if (!a->content)
            return ECC_ERR_NOMEM;
        t->added_of_id[id] = t->n_added++;
    }
    t->eot = str_get(&L->names, EOT_TEXT, strlen(EOT_TEXT));
    for (int k = 0; t->eot < 0 && k < t->n_added; k++)
        if (strcmp(t->added[k].content, EOT_TEXT) == 0)
            t->eot = t->added[k].id;
    return ECC_OK;
}

/* The byte symbols (byte-level) or the <0xNN> tokens (byte fallback) of the vocabulary. */
static ecc_status byte_tokens(loader *L)
{
    ecc_tokenizer *t = L->t;
    for (int b = 0; b < 256; b++) {
        char sym[8];
        if (t->byte_level) {
            uint16_t cp = t->cp_of_byte[b];
            size_t n = cp < 0x80 ? 1 : 2;
            sym[0] = (char)(cp < 0x80 ? cp : 0xC0 | cp >> 6);
            sym[1] = (char)(0x80 | (cp & 0x3F));
            if ((t->byte_id[b] = str_get(&L->names, sym, n)) < 0)
                return ecc_fail(ECC_ERR_FORMAT, "%s: the vocabulary lacks the byte-level symbol '%.*s' (byte 0x%02X)",
                                L->path, (int)n, sym, b);
        }
        snprintf(sym, sizeof sym, "<0x%02X>", b);
        t->fallback_id[b] = t->byte_fallback ? str_get(&L->names, sym, 6) : -1;
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
    ECC_TRY(ecc_read_file(path, TOK_MAX_FILE_BYTES, &data, &len));
    uint64_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += data[i] == '\n';
    ecc_status s = pair_table_init(&L->t->merges, ECC_MIN(lines, (uint64_t)TOK_MAX_ENTRIES));
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
        } else if (rank >= TOK_MAX_ENTRIES) {
            s = ecc_fail(ECC_ERR_FORMAT, "%s: more than %d merges", path, TOK_MAX_ENTRIES);
        } else if (!sp || sp == p || sp + 1 == q || memchr(sp + 1, ' ', (size_t)(q - sp - 1))) {
            s = ecc_fail(ECC_ERR_FORMAT, "%s line %zu: expected two tokens separated by one space, got '%.*s'",
                         path, line_no, TOK_SHOW, p);
        } else {
            int r = add_merge(L, p, (size_t)(sp - p), sp + 1, (size_t)(q - sp - 1), rank++);
            if (r < 0)
                s = ECC_ERR_NOMEM;
            else if (r > 0)
                s = ecc_fail(ECC_ERR_FORMAT, "%s line %zu: '%.*s' refers to '%.*s', a token not in the vocabulary",
                             path, line_no, (int)ECC_MIN(n, TOK_SHOW), p, TOK_SHOW, L->scratch);
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
    if (!merges || cJSON_IsNull(merges))
        return pair_table_init(&L->t->merges, 0);
    if (!cJSON_IsArray(merges) || n > TOK_MAX_ENTRIES)
        return ecc_fail(ECC_ERR_FORMAT, "%s: model.merges must be an array of at most %d merges", L->path,
                        TOK_MAX_ENTRIES);
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
                            L->path, rank, TOK_SHOW, L->scratch);
        rank++;
    }
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
    L->t->unk = -1;
    tok_init_byte_map(L->t);
    return ECC_OK;
}

/* What every loader does last: added-token tries, token bytes, patterns. */
static ecc_status tokenizer_finish(loader *L)
{
    ecc_tokenizer *t = L->t;
    ECC_TRY(byte_tokens(L));
    ECC_TRY(normalize_added(t));
    ECC_TRY(tok_compute_bytes(t));
    ECC_TRY(re_compile(&t->re_alnum, "[\\p{L}\\p{N}]", "tokenizer"));
    return re_compile(&t->re_word, "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]", "tokenizer");
}

static ecc_status tokenizer_done(ecc_tokenizer **out, loader *L, ecc_status s)
{
    free(L->names.e);
    free(L->scratch);
    if (s != ECC_OK)
        ecc_tokenizer_free(L->t);
    else
        *out = L->t;
    return s;
}

/* GPT-2's pipeline, for vocab.json + merges.txt: ByteLevel with its pattern, BPE, ByteLevel decoding. */
static ecc_status gpt2_pipeline(ecc_tokenizer *t)
{
    t->byte_level = 1;
    t->has_decoder = 1;
    t->n_pre = t->n_dec = 1;
    t->pre[0] = (tok_pre){.kind = PRE_BYTELEVEL, .use_regex = 1};
    t->dec[0] = (tok_dec){.kind = DEC_BYTELEVEL};
    return re_compile(&t->pre[0].re, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
                      "GPT-2's pattern");
}

ecc_status ecc_tokenizer_load_bpe(ecc_tokenizer **out, const char *vocab_json_path, const char *merges_txt_path)
{
    loader L;
    cJSON *vocab = NULL;
    ecc_status s = tokenizer_new(out, &L, vocab_json_path);
    L.strict_bytes = 1;
    if (s == ECC_OK)
        s = gpt2_pipeline(L.t);
    if (s == ECC_OK)
        s = parse_json_file(&vocab, vocab_json_path);
    if (s == ECC_OK)
        s = read_vocab(&L, vocab, NULL);
    if (s == ECC_OK)
        s = read_merges_txt(&L, merges_txt_path);
    if (s == ECC_OK)
        s = tokenizer_finish(&L);
    s = tokenizer_done(out, &L, s);
    cJSON_Delete(vocab);
    return s;
}

/* Model settings of tokenizer.json that eccolo reads, and those it refuses. */
static ecc_status read_model_settings(loader *L, const cJSON *model)
{
    ecc_tokenizer *t = L->t;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    const char *why = NULL;
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        why = "model.type is not BPE";
    else if ((cJSON_IsString(prefix) && prefix->valuestring[0]) || (cJSON_IsString(suffix) && suffix->valuestring[0]))
        why = "model sets a continuing_subword_prefix or an end_of_word_suffix";
    else if (cJSON_IsNumber(dropout) && dropout->valuedouble != 0)
        why = "model.dropout is set (BPE dropout samples a different encoding each time)";
    if (why)
        return ecc_fail(ECC_ERR_UNSUPPORTED, "%s: not a tokenizer eccolo reads: %s", L->path, why);
    t->fuse_unk = json_flag(model, "fuse_unk", 0);
    t->byte_fallback = json_flag(model, "byte_fallback", 0);
    t->ignore_merges = json_flag(model, "ignore_merges", 0);
    return ECC_OK;
}

static ecc_status read_unk(loader *L, const cJSON *model)
{
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (!cJSON_IsString(unk))
        return ECC_OK;
    if ((L->t->unk = str_get(&L->names, unk->valuestring, strlen(unk->valuestring))) < 0)
        return ecc_fail(ECC_ERR_FORMAT, "%s: model.unk_token '%.*s' is not in model.vocab", L->path, TOK_SHOW,
                        unk->valuestring);
    return ECC_OK;
}

static ecc_status load_json(ecc_tokenizer **out, const char *path, const char *dir)
{
    loader L;
    cJSON *root = NULL;
    ecc_status s = tokenizer_new(out, &L, path);
    if (s == ECC_OK)
        s = parse_json_file(&root, path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (s == ECC_OK && (!cJSON_IsObject(model) || (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))))
        s = ecc_fail(ECC_ERR_FORMAT, "%s: expected an object \"model\" and an array \"added_tokens\"", path);
    if (s == ECC_OK)
        s = read_model_settings(&L, model);
    if (s == ECC_OK)
        s = load_pipeline(L.t, path, root);
    if (s == ECC_OK)
        s = read_vocab(&L, cJSON_GetObjectItemCaseSensitive(model, "vocab"), cJSON_IsArray(added) ? added : NULL);
    if (s == ECC_OK)
        s = read_merges_json(&L, cJSON_GetObjectItemCaseSensitive(model, "merges"));
    if (s == ECC_OK)
        s = read_unk(&L, model);
    if (s == ECC_OK)
        s = load_template(L.t, path, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    if (s == ECC_OK && dir)
        s = load_tokenizer_config(L.t, dir);
    if (s == ECC_OK)
        s = tokenizer_finish(&L);
    s = tokenizer_done(out, &L, s);
    cJSON_Delete(root);
    return s;
}

ecc_status ecc_tokenizer_load_json(ecc_tokenizer **out, const char *tokenizer_json_path)
{
    return load_json(out, tokenizer_json_path, NULL);
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
        s = load_json(out, tj, dir);
    else if (ecc_file_exists(vj) && ecc_file_exists(mt))
        s = ecc_tokenizer_load_bpe(out, vj, mt);
    else
        s = ecc_fail(ECC_ERR_IO, "%s: no tokenizer found: expected tokenizer.json, or vocab.json and merges.txt", dir);
    free(tj);
    free(vj);
    free(mt);
    return s;
}
