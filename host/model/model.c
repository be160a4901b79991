#define _GNU_SOURCE
#include "model/model.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/eos.h"
#include "io/hub.h"
#include "io/safetensors.h"
#include "util.h"

#define MAX_SHARDS 1024

size_t ecc_param_sizes(size_t s[ECC_N_PARAMS], const ecc_config *c)
{
    size_t V = (size_t)c->vocab_size, C = (size_t)c->n_embd, L = (size_t)c->n_layer, F = (size_t)c->n_inner;
    s[ECC_P_WTE] = V * C;
    s[ECC_P_WPE] = (size_t)c->n_positions * C;
    s[ECC_P_LN1W] = L * C;
    s[ECC_P_LN1B] = L * C;
    s[ECC_P_QKVW] = L * C * 3 * C;
    s[ECC_P_QKVB] = L * 3 * C;
    s[ECC_P_ATTPROJW] = L * C * C;
    s[ECC_P_ATTPROJB] = L * C;
    s[ECC_P_LN2W] = L * C;
    s[ECC_P_LN2B] = L * C;
    s[ECC_P_FCW] = L * C * F;
    s[ECC_P_FCB] = L * F;
    s[ECC_P_FCPROJW] = L * F * C;
    s[ECC_P_FCPROJB] = L * C;
    s[ECC_P_LNFW] = C;
    s[ECC_P_LNFB] = C;
    s[ECC_P_LMHEAD] = c->tied_lm_head ? 0 : V * C;
    size_t total = 0;
    for (int i = 0; i < ECC_N_PARAMS; i++)
        total += s[i];
    return total;
}

void ecc_weights_carve(ecc_weights *w, float *mem, const ecc_config *c)
{
    size_t s[ECC_N_PARAMS];
    ecc_param_sizes(s, c);
    for (int i = 0; i < ECC_N_PARAMS; i++) {
        w->p[i] = mem;
        mem += s[i];
    }
}

/* ---- reading tensors out of one or several safetensors files ------------ */

typedef struct shards {
    int n;
    ecc_st_file *f[MAX_SHARDS];
} shards;

static void shards_close(shards *sh)
{
    for (int i = 0; i < sh->n; i++)
        ecc_st_close(sh->f[i]);
    sh->n = 0;
}

/* model.safetensors, or the files named by model.safetensors.index.json */
static ecc_status shards_open(shards *sh, const char *dir)
{
    sh->n = 0;
    char *single = ecc_path_join(dir, "model.safetensors");
    char *index = ecc_path_join(dir, "model.safetensors.index.json");
    ecc_status s = ECC_OK;
    if (!single || !index) {
        s = ECC_ERR_NOMEM;
    } else if (ecc_file_exists(single)) {
        s = ecc_st_open(&sh->f[0], single);
        sh->n = s == ECC_OK;
    } else if (ecc_file_exists(index)) {
        char *json;
        size_t len;
        s = ecc_read_file(index, 64u << 20, &json, &len);
        cJSON *root = s == ECC_OK ? cJSON_ParseWithLength(json, len) : NULL;
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
        if (s == ECC_OK && !cJSON_IsObject(map))
            s = ecc_fail(ECC_ERR_FORMAT, "%s: no \"weight_map\" object", index);
        const cJSON *e;
        if (s == ECC_OK)
            cJSON_ArrayForEach(e, map)
            {
                if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || e->valuestring[0] == '.') {
                    s = ecc_fail(ECC_ERR_FORMAT, "%s: weight_map entry '%s' must name a file in the same directory",
                                 index, e->string);
                    break;
                }
                int seen = 0;
                for (int i = 0; i < sh->n && !seen; i++)
                    seen = strcmp(strrchr(sh->f[i]->path, '/') + 1, e->valuestring) == 0;
                if (seen)
                    continue;
                if (sh->n == MAX_SHARDS) {
                    s = ecc_fail(ECC_ERR_FORMAT, "%s: more than %d shards", index, MAX_SHARDS);
                    break;
                }
                char *p = ecc_path_join(dir, e->valuestring);
                s = p ? ecc_st_open(&sh->f[sh->n], p) : ECC_ERR_NOMEM;
                free(p);
                if (s != ECC_OK)
                    break;
                sh->n++;
            }
        cJSON_Delete(root);
        free(json);
    } else {
        s = ecc_fail(ECC_ERR_INPUT, "%s: no model.safetensors or model.safetensors.index.json (eccolo reads "
                     "safetensors checkpoints; convert .bin files with transformers' save_pretrained)", dir);
    }
    free(single);
    free(index);
    if (s != ECC_OK)
        shards_close(sh);
    return s;
}

/* Find NAME or transformer.NAME in any shard. */
static const ecc_st_tensor *shards_find(const shards *sh, const char *name)
{
    char pre[256];
    snprintf(pre, sizeof pre, "transformer.%s", name);
    for (int i = 0; i < sh->n; i++) {
        const ecc_st_tensor *t = ecc_st_find(sh->f[i], name);
        if (!t)
            t = ecc_st_find(sh->f[i], pre);
        if (t)
            return t;
    }
    return NULL;
}

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

/* A checkpoint tensor under the name it has inside GPT2Model (without the
 * "transformer." prefix of GPT2LMHeadModel), and where it was found. */
typedef struct named {
    const char *name, *full, *file;
} named;

static int by_name(const void *a, const void *b) { return strcmp(((const named *)a)->name, ((const named *)b)->name); }

/* What config.json does not account for, before any weight is read: a layer
 * past n_layer (transformers drops it with a warning; eccolo refuses it, as
 * the config and the weights disagree) and the same weight twice, under two
 * names (with and without "transformer.") or in two shards (which copy wins
 * would depend on the order of the files). */
static ecc_status check_names(const shards *sh, const ecc_config *c, const char *dir)
{
    int total = 0;
    for (int i = 0; i < sh->n; i++)
        total += sh->f[i]->n;
    named *v = ecc_calloc((size_t)total, sizeof *v, "the tensor names");
    if (!v)
        return ECC_ERR_NOMEM;
    int k = 0;
    ecc_status s = ECC_OK;
    for (int i = 0; i < sh->n && s == ECC_OK; i++)
        for (int j = 0; j < sh->f[i]->n && s == ECC_OK; j++) {
            const char *full = sh->f[i]->tensors[j].name;
            const char *name = strncmp(full, "transformer.", 12) == 0 ? full + 12 : full;
            v[k++] = (named){name, full, base_name(sh->f[i]->path)};
            char *end;
            if (name[0] == 'h' && name[1] == '.' && name[2] >= '0' && name[2] <= '9') {
                long l = strtol(name + 2, &end, 10);
                if (*end == '.' && l >= c->n_layer)
                    s = ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' belongs to layer %ld, but config.json says n_layer "
                                 "%d: the checkpoint has more layers than its config (fix n_layer)", dir, full, l,
                                 c->n_layer);
            }
        }
    if (s == ECC_OK) {
        qsort(v, (size_t)k, sizeof *v, by_name);
        for (int i = 1; i < k && s == ECC_OK; i++)
            if (strcmp(v[i - 1].name, v[i].name) == 0)
                s = ecc_fail(ECC_ERR_FORMAT, "%s: the weight '%s' is in the checkpoint twice, as '%s' in %s and as "
                             "'%s' in %s; remove one of them", dir, v[i].name, v[i - 1].full, v[i - 1].file,
                             v[i].full, v[i].file);
    }
    free(v);
    return s;
}

/* Read one tensor of the expected shape into dst (fp32). keys: the
 * config.json values that imply the shape, for messages. */
static ecc_status load_tensor(float *dst, const shards *sh, const char *name, int ndim, int64_t d0, int64_t d1,
                              const char *keys, char *dtype_seen, const char *dir)
{
    const ecc_st_tensor *t = shards_find(sh, name);
    if (!t)
        return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' is missing from the checkpoint (config.json: %s)", dir,
                        name, keys);
    int64_t want[2] = {d0, d1};
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == want[i];
    if (!ok) {
        char got[96], exp[96];
        ecc_shape_str(got, sizeof got, t->ndim, t->shape);
        ecc_shape_str(exp, sizeof exp, ndim, want);
        return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' has shape %s but config.json implies %s (%s)", dir,
                        t->name, got, exp, keys);
    }
    if (t->dtype != ECC_F32 && t->dtype != ECC_F16 && t->dtype != ECC_BF16)
        return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' is %s; eccolo reads F32, F16 and BF16 weights", dir,
                        t->name, ecc_dtype_name(t->dtype));
    const char *dn = ecc_dtype_name(t->dtype);
    if (!dtype_seen[0])
        snprintf(dtype_seen, 8, "%s", dn);
    else if (strcmp(dtype_seen, dn) != 0)
        snprintf(dtype_seen, 8, "mixed");
    return ecc_st_to_f32(dst, t);
}

static ecc_status load_weights(ecc_model *m, const shards *sh)
{
    const ecc_config *c = &m->cfg;
    int64_t V = c->vocab_size, C = c->n_embd, F = c->n_inner;
    float **p = m->w.p;
    char *dt = m->dtype;
    /* the config.json values behind each shape, for messages */
    char vc[64], pc[64], cc[64], cf[64], lc[128];
    snprintf(vc, sizeof vc, "vocab_size %d, n_embd %d", c->vocab_size, c->n_embd);
    snprintf(pc, sizeof pc, "n_positions %d, n_embd %d", c->n_positions, c->n_embd);
    snprintf(cc, sizeof cc, "n_embd %d", c->n_embd);
    snprintf(cf, sizeof cf, "n_embd %d, n_inner %d", c->n_embd, c->n_inner);
    ECC_TRY(load_tensor(p[ECC_P_WTE], sh, "wte.weight", 2, V, C, vc, dt, m->dir));
    ECC_TRY(load_tensor(p[ECC_P_WPE], sh, "wpe.weight", 2, c->n_positions, C, pc, dt, m->dir));
    for (int l = 0; l < c->n_layer; l++) {
        char n[128];
        size_t L = (size_t)l;
#define LOAD(idx, suffix, nd, a, b, per_layer, keys)                                      \
    snprintf(n, sizeof n, "h.%d.%s", l, suffix);                                          \
    snprintf(lc, sizeof lc, "n_layer %d, %s", c->n_layer, keys);                          \
    ECC_TRY(load_tensor(p[idx] + L * (size_t)(per_layer), sh, n, nd, a, b, lc, dt, m->dir))
        LOAD(ECC_P_LN1W, "ln_1.weight", 1, C, 0, C, cc);
        LOAD(ECC_P_LN1B, "ln_1.bias", 1, C, 0, C, cc);
        LOAD(ECC_P_QKVW, "attn.c_attn.weight", 2, C, 3 * C, C * 3 * C, cc);
        LOAD(ECC_P_QKVB, "attn.c_attn.bias", 1, 3 * C, 0, 3 * C, cc);
        LOAD(ECC_P_ATTPROJW, "attn.c_proj.weight", 2, C, C, C * C, cc);
        LOAD(ECC_P_ATTPROJB, "attn.c_proj.bias", 1, C, 0, C, cc);
        LOAD(ECC_P_LN2W, "ln_2.weight", 1, C, 0, C, cc);
        LOAD(ECC_P_LN2B, "ln_2.bias", 1, C, 0, C, cc);
        LOAD(ECC_P_FCW, "mlp.c_fc.weight", 2, C, F, C * F, cf);
        LOAD(ECC_P_FCB, "mlp.c_fc.bias", 1, F, 0, F, cf);
        LOAD(ECC_P_FCPROJW, "mlp.c_proj.weight", 2, F, C, F * C, cf);
        LOAD(ECC_P_FCPROJB, "mlp.c_proj.bias", 1, C, 0, C, cc);
#undef LOAD
    }
    ECC_TRY(load_tensor(p[ECC_P_LNFW], sh, "ln_f.weight", 1, C, 0, cc, dt, m->dir));
    ECC_TRY(load_tensor(p[ECC_P_LNFB], sh, "ln_f.bias", 1, C, 0, cc, dt, m->dir));
    if (!c->tied_lm_head) {
        const ecc_st_tensor *t = NULL;
        for (int i = 0; i < sh->n && !t; i++)
            t = ecc_st_find(sh->f[i], "lm_head.weight");
        if (!t)
            return ecc_fail(ECC_ERR_FORMAT, "%s: config.json says tie_word_embeddings false but 'lm_head.weight' "
                            "is missing from the checkpoint", m->dir);
        ECC_TRY(load_tensor(p[ECC_P_LMHEAD], sh, t->name, 2, V, C, vc, dt, m->dir));
    }
    return ECC_OK;
}

/* The tokenizer's ids are the first n_tokens rows of the embedding. More rows
 * than tokens is normal (padding to a multiple of 64 or 128, for faster
 * matrix products); more tokens than rows is a broken model. */
static ecc_status set_n_tokens(ecc_config *c, const ecc_tokenizer *tok, const char *dir)
{
    if (ecc_tokenizer_n_vocab(tok) > c->vocab_size)
        return ecc_fail(ECC_ERR_FORMAT, "%s: the tokenizer has %d ids but config.json says vocab_size %d", dir,
                        ecc_tokenizer_n_vocab(tok), c->vocab_size);
    c->n_tokens = ecc_tokenizer_n_vocab(tok);
    return ECC_OK;
}

ecc_status ecc_model_load_dir(ecc_model **out, const char *dir, const char *id)
{
    *out = NULL;
    ecc_model *m = ecc_calloc(1, sizeof *m, "the model");
    if (!m)
        return ECC_ERR_NOMEM;
    m->dir = ecc_strdup(dir);
    m->id = ecc_strdup(id ? id : dir);
    char *cfg_path = ecc_path_join(dir, "config.json");
    ecc_status s = m->dir && m->id && cfg_path ? ECC_OK : ECC_ERR_NOMEM;
    if (s == ECC_OK && !ecc_file_exists(cfg_path))
        s = ecc_fail(ECC_ERR_INPUT, "%s: no config.json (is this a Hugging Face model directory?)", dir);
    if (s == ECC_OK)
        s = ecc_config_load(&m->cfg, cfg_path);
    free(cfg_path);
    if (s == ECC_OK)
        s = ecc_tokenizer_load_dir(&m->tok, dir);
    if (s == ECC_OK)
        s = set_n_tokens(&m->cfg, m->tok, dir);
    if (s == ECC_OK)
        s = ecc_eos_ids_read(&m->eos_ids, &m->n_eos, dir, m->cfg.vocab_size);
    shards sh = {0};
    if (s == ECC_OK)
        s = shards_open(&sh, dir);
    if (s == ECC_OK)
        s = check_names(&sh, &m->cfg, dir);
    if (s == ECC_OK) {
        size_t sizes[ECC_N_PARAMS];
        m->n_params = ecc_param_sizes(sizes, &m->cfg);
        /* the plan before the allocation: config.json's sizes come from the file */
        size_t avail = ecc_mem_available();
        if (m->n_params > avail / sizeof(float))
            s = ecc_fail(ECC_ERR_NOMEM, "%s: the weights need %.0f MiB as fp32 (config.json: %d layers, n_embd %d, "
                         "vocab_size %d) but only %.0f MiB of memory is available", dir,
                         (double)m->n_params * sizeof(float) / 1048576.0, m->cfg.n_layer, m->cfg.n_embd,
                         m->cfg.vocab_size, (double)avail / 1048576.0);
        else if (!(m->params = ecc_malloc(m->n_params * sizeof(float), "the model weights")))
            s = ECC_ERR_NOMEM;
    }
    if (s == ECC_OK) {
        ecc_weights_carve(&m->w, m->params, &m->cfg);
        s = load_weights(m, &sh);
    }
    shards_close(&sh);
    if (s != ECC_OK) {
        ecc_model_close(m);
        return s;
    }
    *out = m;
    return ECC_OK;
}

const char *ecc_default_model(void)
{
    const char *env = getenv("ECCOLO_DEFAULT_MODEL");
    if (env && *env)
        return env;
#ifdef ECCOLO_DEFAULT_MODEL
    return ECCOLO_DEFAULT_MODEL;
#else
    return NULL;
#endif
}

ecc_status ecc_model_open(ecc_model **out, const char *path_or_id)
{
    *out = NULL;
    if (!path_or_id || !*path_or_id) {
        path_or_id = ecc_default_model();
        if (!path_or_id)
            return ecc_fail(ECC_ERR_INPUT, "no model given and this build has no default model: pass --model");
    }
    char *dir;
    ECC_TRY(ecc_resolve_model(&dir, path_or_id));
    ecc_status s = ecc_model_load_dir(out, dir, path_or_id);
    free(dir);
    return s;
}

ecc_status ecc_model_peek(ecc_config *cfg, char **dir, const char *path_or_id)
{
    ECC_TRY(ecc_resolve_model(dir, path_or_id));
    char *cfg_path = ecc_path_join(*dir, "config.json");
    ecc_status s = cfg_path ? ecc_config_load(cfg, cfg_path) : ECC_ERR_NOMEM;
    free(cfg_path);
    ecc_tokenizer *tok = NULL;
    if (s == ECC_OK)
        s = ecc_tokenizer_load_dir(&tok, *dir);
    if (s == ECC_OK)
        s = set_n_tokens(cfg, tok, *dir);
    ecc_tokenizer_free(tok);
    if (s != ECC_OK) {
        free(*dir);
        *dir = NULL;
    }
    return s;
}

void ecc_model_close(ecc_model *m)
{
    if (!m)
        return;
    ecc_tokenizer_free(m->tok);
    free(m->eos_ids);
    free(m->params);
    free(m->dir);
    free(m->id);
    free(m);
}

const ecc_config *ecc_model_config(const ecc_model *m) { return &m->cfg; }
const char *ecc_model_dir(const ecc_model *m) { return m->dir; }
const char *ecc_model_id(const ecc_model *m) { return m->id; }

int ecc_model_eos_ids(const ecc_model *m, const int32_t **ids)
{
    *ids = m->eos_ids;
    return m->n_eos;
}

ecc_status ecc_tokenize(const ecc_model *m, const char *text, size_t len, int32_t **ids, int *n)
{
    return ecc_tokenizer_encode(m->tok, text, len, ids, n);
}

ecc_status ecc_tokenize_ex(const ecc_model *m, const char *text, size_t len, unsigned flags, int32_t **ids, int *n,
                           int *n_front, int *n_back)
{
    int nf = 0, nb = 0;
    if (flags & ECC_TOKENIZE_ADD_SPECIAL)
        ecc_tokenizer_template(m->tok, NULL, &nf, NULL, &nb);
    if (n_front)
        *n_front = nf;
    if (n_back)
        *n_back = nb;
    return ecc_tokenizer_encode_flags(m->tok, text, len, flags, ids, n);
}

ecc_status ecc_detokenize(const ecc_model *m, const int32_t *ids, int n, char **text)
{
    size_t len;
    return ecc_tokenizer_decode(m->tok, ids, n, text, &len);
}
