/* The sections of tokenizer.json around the model: normalizer,
 * pre_tokenizer, post_processor and decoder (Sequence nodes flattened), and
 * tokenizer_config.json's add_bos_token / add_eos_token, which transformers
 * lets override the post-processor. Anything else is refused by name. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok.h"
#include "util.h"

static const char *type_of(const cJSON *o)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : "";
}

static int flag(const cJSON *o, const char *name, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static const char *string_of(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A Replace/Split pattern: {"String": s} (literal) or {"Regex": r}. */
static ecc_status read_pattern(const char *path, const char *what, const cJSON *o, char **lit, size_t *lit_len,
                               pcre2_code **re)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s = string_of(p, "String"), *r = string_of(p, "Regex");
    char where[200];
    snprintf(where, sizeof where, "%s: %s pattern", path, what);
    if (r)
        return re_compile(re, r, where);
    if (!s || !s[0] || !ecc_utf8_valid(s, strlen(s)))
        return ecc_fail(ECC_ERR_FORMAT, "%s needs {\"String\": non-empty UTF-8} or {\"Regex\": ...}", where);
    if (!(*lit = ecc_strdup(s)))
        return ECC_ERR_NOMEM;
    *lit_len = strlen(s);
    return ECC_OK;
}

static ecc_status dup_field(const char *path, const cJSON *o, const char *name, char **out, size_t *len)
{
    const char *s = string_of(o, name);
    if (!s || !ecc_utf8_valid(s, strlen(s)))
        return ecc_fail(ECC_ERR_FORMAT, "%s: %s needs a UTF-8 string \"%s\"", path, type_of(o), name);
    if (!(*out = ecc_strdup(s)))
        return ECC_ERR_NOMEM;
    *len = strlen(s);
    return ECC_OK;
}

/* One character (a Metaspace replacement, a Strip content). */
static ecc_status one_char(const char *path, const cJSON *o, const char *name, uint32_t *cp)
{
    const char *s = string_of(o, name);
    int k;
    if (!s || !s[0] || utf8_step((const uint8_t *)s, strlen(s)) != (int)strlen(s))
        return ecc_fail(ECC_ERR_FORMAT, "%s: %s needs one character in \"%s\"", path, type_of(o), name);
    *cp = utf8_get((const uint8_t *)s, &k);
    return ECC_OK;
}

static ecc_status read_scheme(const char *path, const cJSON *o, prepend_scheme *out)
{
    const char *s = string_of(o, "prepend_scheme");
    *out = !s || strcmp(s, "always") == 0 ? PREPEND_ALWAYS
           : strcmp(s, "first") == 0      ? PREPEND_FIRST
           : strcmp(s, "never") == 0      ? PREPEND_NEVER
                                          : (prepend_scheme)-1;
    if ((int)*out < 0)
        return ecc_fail(ECC_ERR_FORMAT, "%s: Metaspace prepend_scheme '%.40s' is not always, first or never", path, s);
    if (flag(o, "add_prefix_space", 1) == 0)
        *out = PREPEND_NEVER;
    return ECC_OK;
}

static ecc_status stage_room(const char *path, int n, const char *what)
{
    return n < TOK_MAX_STAGES ? ECC_OK
                              : ecc_fail(ECC_ERR_UNSUPPORTED, "%s: more than %d %s", path, TOK_MAX_STAGES, what);
}

static ecc_status read_normalizer(ecc_tokenizer *t, const char *path, const cJSON *o)
{
    const char *type = type_of(o);
    if (!o || cJSON_IsNull(o))
        return ECC_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(o, "normalizers")) ECC_TRY(read_normalizer(t, path, c));
        return ECC_OK;
    }
    ECC_TRY(stage_room(path, t->n_norm, "normalizers"));
    tok_norm *n = &t->norm[t->n_norm];
    static const char *forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
    for (int f = 0; f < 4; f++)
        if (strcmp(type, forms[f]) == 0) {
            n->kind = (norm_kind)f;
            t->n_norm++;
            return ECC_OK;
        }
    if (strcmp(type, "Prepend") == 0) {
        n->kind = NORM_PREPEND;
        t->n_norm++; /* counted first, so that ecc_tokenizer_free frees what follows */
        ECC_TRY(dup_field(path, o, "prepend", &n->content, &n->content_len));
    } else if (strcmp(type, "Replace") == 0) {
        n->kind = NORM_REPLACE;
        t->n_norm++;
        ECC_TRY(read_pattern(path, "normalizer Replace", o, &n->pattern, &n->pattern_len, &n->re));
        ECC_TRY(dup_field(path, o, "content", &n->content, &n->content_len));
    } else {
        return ecc_fail(ECC_ERR_UNSUPPORTED,
                        "%s: normalizer '%.40s' is not supported (eccolo reads NFC, NFD, NFKC, NFKD, Replace, Prepend "
                        "and Sequence)",
                        path, type);
    }
    return ECC_OK;
}

static ecc_status read_pre(ecc_tokenizer *t, const char *path, const cJSON *o)
{
    const char *type = type_of(o);
    if (!o || cJSON_IsNull(o))
        return ECC_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(o, "pretokenizers")) ECC_TRY(read_pre(t, path, c));
        return ECC_OK;
    }
    ECC_TRY(stage_room(path, t->n_pre, "pre-tokenizers"));
    if (t->byte_level)
        return ecc_fail(ECC_ERR_UNSUPPORTED, "%s: a pre-tokenizer after ByteLevel is not supported", path);
    tok_pre *p = &t->pre[t->n_pre++]; /* counted first, so that ecc_tokenizer_free frees what follows */
    if (strcmp(type, "ByteLevel") == 0) {
        p->kind = PRE_BYTELEVEL;
        p->add_prefix_space = flag(o, "add_prefix_space", 0);
        p->use_regex = flag(o, "use_regex", 1);
        if (p->use_regex)
            ECC_TRY(re_compile(&p->re, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
                               "GPT-2's pattern"));
        t->byte_level = 1;
    } else if (strcmp(type, "Split") == 0) {
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        const char *b = string_of(o, "behavior");
        int k = 0;
        while (k < 5 && !(b && strcmp(b, names[k]) == 0))
            k++;
        if (k == 5)
            return ecc_fail(ECC_ERR_FORMAT, "%s: Split behavior '%.40s' is not one of Removed, Isolated, "
                            "MergedWithPrevious, MergedWithNext, Contiguous", path, b ? b : "(none)");
        p->kind = PRE_SPLIT;
        p->behavior = (split_behavior)k;
        p->invert = flag(o, "invert", 0);
        ECC_TRY(read_pattern(path, "pre_tokenizer Split", o, &p->literal, &p->literal_len, &p->re));
    } else if (strcmp(type, "Metaspace") == 0) {
        uint32_t cp;
        p->kind = PRE_METASPACE;
        ECC_TRY(one_char(path, o, "replacement", &cp));
        p->repl_len = (size_t)utf8_put((uint8_t *)p->repl, cp);
        ECC_TRY(read_scheme(path, o, &p->scheme));
        p->split = flag(o, "split", 1);
    } else if (strcmp(type, "Digits") == 0) {
        p->kind = PRE_DIGITS;
        p->individual_digits = flag(o, "individual_digits", 0);
    } else {
        return ecc_fail(ECC_ERR_UNSUPPORTED,
                        "%s: pre_tokenizer '%.40s' is not supported (eccolo reads ByteLevel, Split, Metaspace, Digits "
                        "and Sequence)",
                        path, type);
    }
    return ECC_OK;
}

static ecc_status read_decoder(ecc_tokenizer *t, const char *path, const cJSON *o)
{
    const char *type = type_of(o);
    if (!o || cJSON_IsNull(o))
        return ECC_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(o, "decoders")) ECC_TRY(read_decoder(t, path, c));
        return ECC_OK;
    }
    ECC_TRY(stage_room(path, t->n_dec, "decoders"));
    tok_dec *d = &t->dec[t->n_dec++]; /* counted first, so that ecc_tokenizer_free frees what follows */
    if (strcmp(type, "ByteLevel") == 0) {
        d->kind = DEC_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->kind = DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->kind = DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        d->kind = DEC_REPLACE;
        ECC_TRY(read_pattern(path, "decoder Replace", o, &d->pattern, &d->pattern_len, &d->re));
        ECC_TRY(dup_field(path, o, "content", &d->content, &d->content_len));
    } else if (strcmp(type, "Strip") == 0) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "start"), *z = cJSON_GetObjectItemCaseSensitive(o, "stop");
        d->kind = DEC_STRIP;
        ECC_TRY(one_char(path, o, "content", &d->strip_char));
        if (!cJSON_IsNumber(a) || !cJSON_IsNumber(z) || a->valuedouble < 0 || z->valuedouble < 0 ||
            a->valuedouble > 1e6 || z->valuedouble > 1e6)
            return ecc_fail(ECC_ERR_FORMAT, "%s: decoder Strip needs counts \"start\" and \"stop\"", path);
        d->strip_start = (int)a->valuedouble, d->strip_stop = (int)z->valuedouble;
    } else if (strcmp(type, "Metaspace") == 0) {
        d->kind = DEC_METASPACE;
        ECC_TRY(one_char(path, o, "replacement", &d->repl));
        ECC_TRY(read_scheme(path, o, &d->scheme));
    } else {
        return ecc_fail(ECC_ERR_UNSUPPORTED,
                        "%s: decoder '%.40s' is not supported (eccolo reads ByteLevel, Replace, ByteFallback, Fuse, "
                        "Strip, Metaspace and Sequence)",
                        path, type);
    }
    return ECC_OK;
}

ecc_status load_pipeline(ecc_tokenizer *t, const char *path, const cJSON *root)
{
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    ECC_TRY(read_normalizer(t, path, norm));
    ECC_TRY(read_pre(t, path, pre));
    if (t->n_norm == 0 && t->n_pre == 0) /* nothing would cut the text: the whole text would be one word */
        return ecc_fail(ECC_ERR_UNSUPPORTED,
                        "%s: not a tokenizer eccolo reads: it has no normalizer, and its pre_tokenizer is not "
                        "ByteLevel, Split, Metaspace or Digits",
                        path);
    ECC_TRY(read_decoder(t, path, dec));
    t->has_decoder = t->n_dec > 0;
    if (!t->has_decoder && t->byte_level) { /* without a decoder, byte-level tokens would decode as symbols */
        t->dec[0] = (tok_dec){.kind = DEC_BYTELEVEL};
        t->n_dec = 1;
        t->has_decoder = 1;
    }
    return ECC_OK;
}

/* ---- post-processing ---- */

static ecc_status set_template(ecc_tokenizer *t, const int32_t *front, int nf, const int32_t *back, int nb,
                               const char *source)
{
    free(t->tmpl_front), free(t->tmpl_back), free(t->tmpl_source);
    t->tmpl_front = ecc_malloc(((size_t)nf + 1) * sizeof(int32_t), "the template");
    t->tmpl_back = ecc_malloc(((size_t)nb + 1) * sizeof(int32_t), "the template");
    t->tmpl_source = ecc_strdup(source);
    if (!t->tmpl_front || !t->tmpl_back || !t->tmpl_source)
        return ECC_ERR_NOMEM;
    memcpy(t->tmpl_front, front, (size_t)nf * sizeof(int32_t));
    memcpy(t->tmpl_back, back, (size_t)nb * sizeof(int32_t));
    t->n_front = nf, t->n_back = nb;
    return ECC_OK;
}

static int valid_id(const ecc_tokenizer *t, double v)
{
    return v >= 0 && v < t->n_vocab && v == (double)(int32_t)v && t->str_off[(int32_t)v] != TOK_NO_TOKEN;
}

/* TemplateProcessing's "single": special tokens before and after $A. */
static ecc_status read_template(ecc_tokenizer *t, const char *path, const cJSON *o)
{
    int32_t ids[2][64];
    int n[2] = {0, 0}, side = 0;
    const cJSON *piece, *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    cJSON_ArrayForEach(piece, cJSON_GetObjectItemCaseSensitive(o, "single"))
    {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(piece, "Sequence");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(piece, "SpecialToken");
        if (seq) {
            if (side)
                return ecc_fail(ECC_ERR_UNSUPPORTED, "%s: post_processor.single has two sequences", path);
            side = 1;
            continue;
        }
        const char *name = string_of(sp, "id");
        const cJSON *tok = name ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL, *id;
        if (!tok)
            return ecc_fail(ECC_ERR_FORMAT, "%s: post_processor.single names a special token missing from special_tokens",
                            path);
        cJSON_ArrayForEach(id, cJSON_GetObjectItemCaseSensitive(tok, "ids"))
        {
            if (!cJSON_IsNumber(id) || !valid_id(t, id->valuedouble) || n[side] == 64)
                return ecc_fail(ECC_ERR_FORMAT, "%s: post_processor special token '%.40s' has an id that is not a token",
                                path, name);
            ids[side][n[side]++] = (int32_t)id->valuedouble;
        }
    }
    if (!side)
        return ecc_fail(ECC_ERR_FORMAT, "%s: post_processor.single lacks the sequence $A", path);
    return set_template(t, ids[0], n[0], ids[1], n[1], "tokenizer.json post_processor");
}

ecc_status load_template(ecc_tokenizer *t, const char *path, const cJSON *o)
{
    const char *type = type_of(o);
    if (!o || cJSON_IsNull(o) || strcmp(type, "ByteLevel") == 0)
        return ECC_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(o, "processors")) ECC_TRY(load_template(t, path, c));
        return ECC_OK;
    }
    if (strcmp(type, "TemplateProcessing") == 0)
        return read_template(t, path, o);
    if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "cls"), *sep = cJSON_GetObjectItemCaseSensitive(o, "sep");
        const cJSON *c = cJSON_GetArrayItem(cls, 1), *s = cJSON_GetArrayItem(sep, 1);
        if (!cJSON_IsNumber(c) || !cJSON_IsNumber(s) || !valid_id(t, c->valuedouble) || !valid_id(t, s->valuedouble))
            return ecc_fail(ECC_ERR_FORMAT, "%s: %s needs \"cls\" and \"sep\" as [token, id]", path, type);
        int32_t front = (int32_t)c->valuedouble, back = (int32_t)s->valuedouble;
        return set_template(t, &front, 1, &back, 1, "tokenizer.json post_processor");
    }
    return ecc_fail(ECC_ERR_UNSUPPORTED,
                    "%s: post_processor '%.40s' is not supported (eccolo reads TemplateProcessing, ByteLevel, "
                    "RobertaProcessing, BertProcessing and Sequence)",
                    path, type);
}

/* The id of a token string (an added token's content first, then the vocabulary), or -1. */
static int32_t find_token(const ecc_tokenizer *t, const char *s)
{
    size_t len = strlen(s);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].content, s, len) == 0)
            return t->added[i].id;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->str_off[id] != TOK_NO_TOKEN && t->str_len[id] == len && memcmp(t->str_pool + t->str_off[id], s, len) == 0)
            return id;
    return -1;
}

/* bos_token / eos_token: a string, or {"content": ...}. */
static const char *token_name(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsString(v) ? v->valuestring : string_of(v, "content");
}

ecc_status load_tokenizer_config(ecc_tokenizer *t, const char *dir)
{
    char *path = ecc_path_join(dir, "tokenizer_config.json"), *data = NULL;
    size_t len;
    if (!path)
        return ECC_ERR_NOMEM;
    if (!ecc_file_exists(path)) {
        free(path);
        return ECC_OK;
    }
    ecc_status s = ecc_read_file(path, TOK_MAX_FILE_BYTES, &data, &len);
    cJSON *cfg = s == ECC_OK ? cJSON_ParseWithLength(data, len) : NULL;
    if (s == ECC_OK && !cJSON_IsObject(cfg))
        s = ecc_fail(ECC_ERR_FORMAT, "%s: not a JSON object", path);
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    if (s == ECC_OK && (cJSON_IsBool(ab) || cJSON_IsBool(ae))) { /* transformers rebuilds the template */
        int32_t front[1], back[1];
        int nf = 0, nb = 0;
        const char *bos = token_name(cfg, "bos_token"), *eos = token_name(cfg, "eos_token");
        if (cJSON_IsTrue(ab) && bos && (front[0] = find_token(t, bos)) >= 0)
            nf = 1;
        else if (cJSON_IsTrue(ab) && bos)
            s = ecc_fail(ECC_ERR_FORMAT, "%s: bos_token '%.40s' is not a token of tokenizer.json", path, bos);
        if (cJSON_IsTrue(ae) && eos && (back[0] = find_token(t, eos)) >= 0)
            nb = 1;
        else if (s == ECC_OK && cJSON_IsTrue(ae) && eos)
            s = ecc_fail(ECC_ERR_FORMAT, "%s: eos_token '%.40s' is not a token of tokenizer.json", path, eos);
        if (s == ECC_OK)
            s = set_template(t, front, nf, back, nb, "tokenizer_config.json add_bos_token/add_eos_token");
    }
    cJSON_Delete(cfg);
    free(data), free(path);
    return s;
}

/* Added tokens go into the trie of raw text (normalized: false) or of
 * normalized text, there by their normalized form, which is also what they
 * decode to (as tokenizers 0.23 does). */
ecc_status normalize_added(ecc_tokenizer *t)
{
    for (int i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        uint8_t *norm = (uint8_t *)a->content;
        size_t len = a->len;
        if (a->normalized && t->n_norm > 0) {
            if (utf8_first_invalid((const uint8_t *)a->content, a->len) < a->len)
                return ecc_fail(ECC_ERR_FORMAT, "tokenizer: added token '%.40s' is not valid UTF-8", a->content);
            pcre2_match_data *md = pcre2_match_data_create(16, NULL);
            ecc_status s = md ? normalize_text(t, md, &norm, &len, (const uint8_t *)a->content, a->len) : ECC_ERR_NOMEM;
            pcre2_match_data_free(md);
            ECC_TRY(s);
        }
        a->match = ecc_malloc(len + 1, "an added token");
        if (!a->match) {
            if (norm != (uint8_t *)a->content)
                free(norm);
            return ECC_ERR_NOMEM;
        }
        memcpy(a->match, norm, len);
        a->match[len] = '\0';
        a->match_len = len;
        if (norm != (uint8_t *)a->content)
            free(norm);
        if (len != a->len || memcmp(a->match, a->content, len) != 0) { /* decodes as its normalized form */
            if (t->str_used + len > t->str_cap)
                return ecc_fail(ECC_ERR_UNSUPPORTED, "tokenizer: added token '%.40s' grows too much when normalized",
                                a->content);
            memcpy(t->str_pool + t->str_used, a->match, len);
            t->str_off[a->id] = (uint32_t)t->str_used;
            t->str_len[a->id] = (uint32_t)len;
            t->str_used += len;
        }
        ECC_TRY(trie_add(a->normalized ? &t->norm_trie : &t->raw_trie, a->match, len, i));
    }
    return ECC_OK;
}

void pipeline_free(ecc_tokenizer *t)
{
    for (int i = 0; i < t->n_norm; i++)
        free(t->norm[i].pattern), free(t->norm[i].content), pcre2_code_free(t->norm[i].re);
    for (int i = 0; i < t->n_pre; i++)
        free(t->pre[i].literal), pcre2_code_free(t->pre[i].re);
    for (int i = 0; i < t->n_dec; i++)
        free(t->dec[i].pattern), free(t->dec[i].content), pcre2_code_free(t->dec[i].re);
    free(t->tmpl_front), free(t->tmpl_back), free(t->tmpl_source);
}
