#include "model/config.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* An integer field in [lo, hi]; *present = 0 when the key is absent or null. */
static ecc_status get_int(int *out, int *present, const cJSON *root, const char *key, long lo, long hi,
                          const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *present = v && !cJSON_IsNull(v);
    if (!*present)
        return ECC_OK;
    if (!cJSON_IsNumber(v))
        return ecc_fail(ECC_ERR_FORMAT, "%s: \"%s\" must be an integer", path, key);
    /* the range first: casting 1e28 to long is undefined (fuzz/regressions/config) */
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return ecc_fail(ECC_ERR_FORMAT, "%s: \"%s\" is %.6g, outside [%ld, %ld]", path, key, v->valuedouble, lo, hi);
    if (v->valuedouble != (double)(long)v->valuedouble)
        return ecc_fail(ECC_ERR_FORMAT, "%s: \"%s\" must be an integer", path, key);
    *out = (int)v->valuedouble;
    return ECC_OK;
}

static ecc_status need_int(int *out, const cJSON *root, const char *key, const char *alt, long lo, long hi,
                           const char *path)
{
    int present;
    ECC_TRY(get_int(out, &present, root, key, lo, hi, path));
    if (!present && alt)
        ECC_TRY(get_int(out, &present, root, alt, lo, hi, path));
    if (!present)
        return ecc_fail(ECC_ERR_FORMAT, "%s: \"%s\" is missing (is this a GPT-2 config.json?)", path, key);
    return ECC_OK;
}

static int get_bool(const cJSON *root, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static ecc_status parse_gpt2(ecc_config *c, const cJSON *root, const char *path)
{
    int present;
    ECC_TRY(need_int(&c->n_layer, root, "n_layer", NULL, 1, 1024, path));
    ECC_TRY(need_int(&c->n_head, root, "n_head", NULL, 1, 1024, path));
    ECC_TRY(need_int(&c->n_embd, root, "n_embd", NULL, 1, 1 << 16, path));
    ECC_TRY(need_int(&c->n_positions, root, "n_positions", "n_ctx", 1, 1 << 20, path));
    ECC_TRY(need_int(&c->vocab_size, root, "vocab_size", NULL, 1, 1 << 24, path));
    c->n_tokens = c->vocab_size; /* the model lowers it to the tokenizer's size */
    if (c->n_embd % c->n_head != 0)
        return ecc_fail(ECC_ERR_FORMAT, "%s: n_embd %d is not a multiple of n_head %d", path, c->n_embd, c->n_head);
    c->n_inner = 4 * c->n_embd; /* null or absent means 4 * n_embd */
    ECC_TRY(get_int(&c->n_inner, &present, root, "n_inner", 1, 1 << 20, path));

    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    c->layer_norm_eps = 1e-5f;
    if (eps && !cJSON_IsNull(eps)) {
        /* checked as the float the model uses: 1e-56 would round to 0 (fuzz/regressions/config) */
        float e = cJSON_IsNumber(eps) && eps->valuedouble > 0 && eps->valuedouble < 1 ? (float)eps->valuedouble : 0;
        if (!(e > 0 && e < 1))
            return ecc_fail(ECC_ERR_FORMAT, "%s: \"layer_norm_epsilon\" must be a number in (0, 1), and above 0 as a "
                            "float (at least about 1.4e-45)", path);
        c->layer_norm_eps = e;
    }

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    const char *a = cJSON_IsString(act) ? act->valuestring : "gelu_new";
    if (act && !cJSON_IsString(act) && !cJSON_IsNull(act))
        return ecc_fail(ECC_ERR_FORMAT, "%s: \"activation_function\" must be a string", path);
    /* three names for the same tanh approximation of GELU */
    if (strcmp(a, "gelu_new") && strcmp(a, "gelu_pytorch_tanh") && strcmp(a, "gelu_fast"))
        return ecc_fail(ECC_ERR_UNSUPPORTED, "%s: activation_function \"%.40s\" is not supported; eccolo implements "
                        "gelu_new, the tanh approximation GPT-2 uses", path, a);
    snprintf(c->activation, sizeof c->activation, "gelu_new");

    if (!get_bool(root, "scale_attn_weights", 1))
        return ecc_fail(ECC_ERR_UNSUPPORTED, "%s: scale_attn_weights false is not supported", path);
    c->scale_attn_by_inverse_layer_idx = get_bool(root, "scale_attn_by_inverse_layer_idx", 0);
    c->tied_lm_head = get_bool(root, "tie_word_embeddings", 1);
    c->eos_token_id = -1;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (cJSON_IsArray(eos)) { /* Llama 3 lists several: the first here, all of them in model/eos.c */
        const cJSON *first = eos->child;
        if (first && (!cJSON_IsNumber(first) || first->valuedouble < 0 || first->valuedouble >= c->vocab_size ||
                      first->valuedouble != (double)(int)first->valuedouble))
            return ecc_fail(ECC_ERR_FORMAT, "%s: \"eos_token_id\" holds a value outside [0, %d)", path, c->vocab_size);
        c->eos_token_id = first ? (int)first->valuedouble : -1;
    } else {
        ECC_TRY(get_int(&c->eos_token_id, &present, root, "eos_token_id", 0, c->vocab_size - 1, path));
    }
    return ECC_OK;
}

ecc_status ecc_config_parse(ecc_config *cfg, const char *json, size_t len, const char *path)
{
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ecc_fail(ECC_ERR_FORMAT, "%s: not a valid JSON object", path);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    ecc_status s;
    if (!cJSON_IsString(mt))
        s = ecc_fail(ECC_ERR_FORMAT, "%s: \"model_type\" is missing", path);
    else if (strcmp(mt->valuestring, "gpt2") != 0)
        s = ecc_fail(ECC_ERR_UNSUPPORTED, "%s: model_type \"%.40s\" is not supported yet; eccolo runs the GPT-2 "
                     "family (gpt2, distilgpt2, gpt2-medium/large/xl)", path, mt->valuestring);
    else {
        snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt->valuestring);
        s = parse_gpt2(cfg, root, path);
    }
    cJSON_Delete(root);
    return s;
}

ecc_status ecc_config_load(ecc_config *cfg, const char *path)
{
    char *json;
    size_t len;
    ECC_TRY(ecc_read_file(path, 1u << 20, &json, &len));
    ecc_status s = ecc_config_parse(cfg, json, len, path);
    free(json);
    return s;
}

const char *ecc_padding_note(const ecc_config *c, int32_t id)
{
    static _Thread_local char note[128];
    if (id < c->n_tokens || id >= c->vocab_size)
        return "";
    snprintf(note, sizeof note, " (ids %d to %d are padding rows of the embedding, not tokens)", c->n_tokens,
             c->vocab_size - 1);
    return note;
}
