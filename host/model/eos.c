/* End-of-sequence ids from config.json and generation_config.json (see eos.h). */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "model/eos.h"
#include "util.h"

#define MAX_EOS 64

/* Add the eos_token_id of one file (a number, a list of numbers, null or absent). */
static ecc_status add_from(int32_t *ids, int *n, const char *dir, const char *name, int vocab_size)
{
    char *path = ecc_path_join(dir, name), *data = NULL;
    size_t len;
    if (!path)
        return ECC_ERR_NOMEM;
    if (!ecc_file_exists(path)) {
        free(path);
        return ECC_OK;
    }
    ecc_status s = ecc_read_file(path, 1 << 20, &data, &len);
    cJSON *root = s == ECC_OK ? cJSON_ParseWithLength(data, len) : NULL;
    if (s == ECC_OK && !cJSON_IsObject(root))
        s = ecc_fail(ECC_ERR_FORMAT, "%s: not a valid JSON object", path);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"), *e;
    if (s == ECC_OK && v && !cJSON_IsNull(v) && !cJSON_IsNumber(v) && !cJSON_IsArray(v))
        s = ecc_fail(ECC_ERR_FORMAT, "%s: \"eos_token_id\" must be an integer or a list of integers", path);
    const cJSON *one[1] = {v};
    int count = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : cJSON_IsNumber(v);
    e = cJSON_IsArray(v) ? v->child : one[0];
    for (int i = 0; s == ECC_OK && i < count; i++, e = e->next) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble < vocab_size) ||
            e->valuedouble != (double)(int32_t)e->valuedouble) {
            s = ecc_fail(ECC_ERR_FORMAT, "%s: \"eos_token_id\" holds a value that is not a token id in [0, %d)", path,
                         vocab_size);
            break;
        }
        int32_t id = (int32_t)e->valuedouble, seen = 0;
        for (int k = 0; k < *n; k++)
            seen |= ids[k] == id;
        if (!seen && *n == MAX_EOS)
            s = ecc_fail(ECC_ERR_FORMAT, "%s: more than %d eos_token_id values", path, MAX_EOS);
        else if (!seen)
            ids[(*n)++] = id;
    }
    cJSON_Delete(root);
    free(data), free(path);
    return s;
}

ecc_status ecc_eos_ids_read(int32_t **ids, int *n, const char *dir, int vocab_size)
{
    *n = 0;
    *ids = ecc_malloc(MAX_EOS * sizeof **ids, "end-of-sequence ids");
    if (!*ids)
        return ECC_ERR_NOMEM;
    ecc_status s = add_from(*ids, n, dir, "config.json", vocab_size);
    if (s == ECC_OK)
        s = add_from(*ids, n, dir, "generation_config.json", vocab_size);
    if (s != ECC_OK) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return s;
}
