#define _GNU_SOURCE
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static const struct {
    const char *name;
    size_t size;
} k_dtypes[ECC_DTYPE_COUNT] = {
    [ECC_F32] = {"F32", 4}, [ECC_F16] = {"F16", 2}, [ECC_BF16] = {"BF16", 2}, [ECC_F64] = {"F64", 8},
    [ECC_I64] = {"I64", 8}, [ECC_I32] = {"I32", 4}, [ECC_I16] = {"I16", 2},   [ECC_I8] = {"I8", 1},
    [ECC_U8] = {"U8", 1},   [ECC_BOOL] = {"BOOL", 1},
};

const char *ecc_dtype_name(ecc_dtype d) { return (unsigned)d < ECC_DTYPE_COUNT ? k_dtypes[d].name : "?"; }
size_t ecc_dtype_size(ecc_dtype d) { return (unsigned)d < ECC_DTYPE_COUNT ? k_dtypes[d].size : 0; }

static int dtype_from_name(const char *s, ecc_dtype *d)
{
    for (int i = 0; i < ECC_DTYPE_COUNT; i++)
        if (strcmp(s, k_dtypes[i].name) == 0) {
            *d = (ecc_dtype)i;
            return 1;
        }
    return 0;
}

float ecc_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, bits;
    if (exp == 0x1F) { /* inf / nan */
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp != 0) { /* normal */
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else if (mant == 0) { /* zero */
        bits = sign;
    } else { /* subnormal: renormalise */
        exp = 113;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            exp--;
        }
        bits = sign | (exp << 23) | ((mant & 0x3FFu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float ecc_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---- reader ------------------------------------------------------------- */

typedef struct span {
    uint64_t begin, end;
    int idx;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static ecc_status parse_tensor(ecc_st_tensor *t, const cJSON *e, const char *path)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(sh))
        return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' needs a dtype string and a shape array", path,
                        t->name);
    if (!dtype_from_name(dt->valuestring, &t->dtype))
        return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", path, t->name,
                        dt->valuestring);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ECC_ST_MAX_DIMS)
        return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (at most %d)", path, t->name, nd,
                        ECC_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh)
    {
        /* 2^53 is where a JSON double stops holding integers exactly */
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9007199254740992.0 ||
            d->valuedouble != (double)(int64_t)d->valuedouble)
            return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' has an invalid dimension", path, t->name);
        t->shape[i] = (int64_t)d->valuedouble;
        if (ecc_mul_overflow(numel, (uint64_t)t->shape[i], &numel))
            return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s': the product of its shape overflows 64 bits", path,
                            t->name);
        i++;
    }
    t->numel = numel;
    if (ecc_mul_overflow(numel, ecc_dtype_size(t->dtype), &t->nbytes))
        return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s': its byte size overflows 64 bits", path, t->name);
    return ECC_OK;
}

static ecc_status parse_offsets(uint64_t *begin, uint64_t *end, const cJSON *e, const char *path,
                                const char *name)
{
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' needs data_offsets [begin, end]", path, name);
    double v[2];
    for (int k = 0; k < 2; k++) {
        const cJSON *x = cJSON_GetArrayItem(off, k);
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 9007199254740992.0 ||
            x->valuedouble != (double)(uint64_t)x->valuedouble)
            return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' has an invalid data offset", path, name);
        v[k] = x->valuedouble;
    }
    *begin = (uint64_t)v[0];
    *end = (uint64_t)v[1];
    return ECC_OK;
}

static ecc_status parse_meta(ecc_st_file *f, const cJSON *m)
{
    if (!cJSON_IsObject(m))
        return ecc_fail(ECC_ERR_FORMAT, "%s: __metadata__ must be an object of strings", f->path);
    if (f->meta_keys) /* a second "__metadata__" key would overrun the arrays sized for the first */
        return ecc_fail(ECC_ERR_FORMAT, "%s: __metadata__ appears more than once", f->path);
    int n = cJSON_GetArraySize(m);
    f->meta_keys = ecc_calloc((size_t)n, sizeof(char *), "safetensors metadata");
    f->meta_values = ecc_calloc((size_t)n, sizeof(char *), "safetensors metadata");
    if (!f->meta_keys || !f->meta_values)
        return ECC_ERR_NOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, m)
    {
        if (!cJSON_IsString(e))
            return ecc_fail(ECC_ERR_FORMAT, "%s: __metadata__ value '%s' is not a string", f->path, e->string);
        f->meta_keys[f->n_meta] = ecc_strdup(e->string);
        f->meta_values[f->n_meta] = ecc_strdup(e->valuestring);
        if (!f->meta_keys[f->n_meta] || !f->meta_values[f->n_meta])
            return ECC_ERR_NOMEM;
        f->n_meta++;
    }
    return ECC_OK;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* JSON allows a key twice; a tensor table must not. */
static ecc_status check_unique_names(const ecc_st_file *f)
{
    char **names = ecc_calloc((size_t)f->n, sizeof(char *), "the safetensors table");
    if (!names)
        return ECC_ERR_NOMEM;
    for (int i = 0; i < f->n; i++)
        names[i] = f->tensors[i].name;
    qsort(names, (size_t)f->n, sizeof(char *), name_cmp);
    ecc_status s = ECC_OK;
    for (int i = 1; i < f->n && s == ECC_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            s = ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' appears more than once in the header", f->path, names[i]);
    free(names);
    return s;
}

static ecc_status parse_header(ecc_st_file *f, const char *json, size_t len, uint64_t data_len)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ecc_fail(ECC_ERR_FORMAT, "%s: the header is not a JSON object", f->path);
    }
    ecc_status s = ECC_OK;
    int n = cJSON_GetArraySize(root);
    if (n > ECC_ST_MAX_TENSORS) {
        cJSON_Delete(root);
        return ecc_fail(ECC_ERR_FORMAT, "%s: %d entries in the header (at most %d)", f->path, n,
                        ECC_ST_MAX_TENSORS);
    }
    f->tensors = ecc_calloc((size_t)n, sizeof(ecc_st_tensor), "the safetensors table");
    span *spans = ecc_calloc((size_t)n, sizeof(span), "the safetensors table");
    if (!f->tensors || !spans) {
        free(spans);
        cJSON_Delete(root);
        return ECC_ERR_NOMEM;
    }
    const uint8_t *data = (const uint8_t *)json + len;
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        if (strcmp(e->string, "__metadata__") == 0) {
            if ((s = parse_meta(f, e)) != ECC_OK)
                break;
            continue;
        }
        ecc_st_tensor *t = &f->tensors[f->n];
        if (!(t->name = ecc_strdup(e->string))) {
            s = ECC_ERR_NOMEM;
            break;
        }
        f->n++;
        uint64_t begin = 0, end = 0;
        if ((s = parse_tensor(t, e, f->path)) != ECC_OK || (s = parse_offsets(&begin, &end, e, f->path, t->name)))
            break;
        if (begin > end || end > data_len) {
            s = ecc_fail(ECC_ERR_FORMAT,
                         "%s: tensor '%s' spans bytes [%llu, %llu) of data but the file holds %llu data bytes "
                         "(truncated or corrupt file)",
                         f->path, t->name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_len);
            break;
        }
        if (end - begin != t->nbytes) {
            s = ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' is %s with %llu elements (%llu bytes) but its offsets "
                         "span %llu bytes", f->path, t->name, ecc_dtype_name(t->dtype),
                         (unsigned long long)t->numel, (unsigned long long)t->nbytes,
                         (unsigned long long)(end - begin));
            break;
        }
        t->data = data + begin;
        spans[f->n - 1] = (span){begin, end, f->n - 1};
    }
    if (s == ECC_OK)
        s = check_unique_names(f);
    if (s == ECC_OK) {
        /* The tensors must tile the data exactly: sorted by offset, each begins where the last ended. */
        qsort(spans, (size_t)f->n, sizeof(span), span_cmp);
        uint64_t at = 0;
        for (int i = 0; i < f->n && s == ECC_OK; i++) {
            if (spans[i].begin < at)
                s = ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' overlaps the tensor before it (begins at byte %llu, "
                             "the previous ends at %llu)", f->path, f->tensors[spans[i].idx].name,
                             (unsigned long long)spans[i].begin, (unsigned long long)at);
            else if (spans[i].begin > at)
                s = ecc_fail(ECC_ERR_FORMAT, "%s: %llu unused bytes before tensor '%s'", f->path,
                             (unsigned long long)(spans[i].begin - at), f->tensors[spans[i].idx].name);
            at = spans[i].end;
        }
        if (s == ECC_OK && at != data_len)
            s = ecc_fail(ECC_ERR_FORMAT, "%s: the tensors cover %llu data bytes but the file holds %llu", f->path,
                         (unsigned long long)at, (unsigned long long)data_len);
    }
    free(spans);
    cJSON_Delete(root);
    return s;
}

/* Validate the image f->map[0..map_len): the length prefix, then the header. */
static ecc_status validate(ecc_st_file *f)
{
    const char *path = f->path;
    if (f->map_len < 8)
        return ecc_fail(ECC_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file (truncated?)", path,
                        f->map_len);
    const uint8_t *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    if (hlen > ECC_ST_MAX_HEADER)
        return ecc_fail(ECC_ERR_FORMAT, "%s: header of %llu bytes is larger than the %u bytes allowed", path,
                        (unsigned long long)hlen, ECC_ST_MAX_HEADER);
    if (hlen > f->map_len - 8)
        return ecc_fail(ECC_ERR_FORMAT, "%s: header of %llu bytes runs past the end of the %zu-byte file "
                        "(truncated or not a safetensors file)", path, (unsigned long long)hlen, f->map_len);
    return parse_header(f, (const char *)p + 8, (size_t)hlen, f->map_len - 8 - hlen);
}

static ecc_st_file *new_file(const char *path)
{
    ecc_st_file *f = ecc_calloc(1, sizeof *f, "a safetensors file");
    if (f && !(f->path = ecc_strdup(path))) {
        free(f);
        f = NULL;
    }
    return f;
}

ecc_status ecc_st_parse(ecc_st_file **out, const char *name, const uint8_t *data, size_t len)
{
    *out = NULL;
    ecc_st_file *f = new_file(name);
    if (!f)
        return ECC_ERR_NOMEM;
    f->map = (void *)(uintptr_t)data; /* borrowed: not unmapped by ecc_st_close */
    f->map_len = len;
    ecc_status s = validate(f);
    if (s != ECC_OK) {
        ecc_st_close(f);
        return s;
    }
    *out = f;
    return ECC_OK;
}

ecc_status ecc_st_open(ecc_st_file **out, const char *path)
{
    *out = NULL;
    ecc_st_file *f = new_file(path);
    if (!f)
        return ECC_ERR_NOMEM;
    int fd = -1;
    uint64_t size = 0;
    ecc_status s = ecc_open_input(path, &fd, &size); /* a FIFO or a device is refused, never waited on */
    if (s != ECC_OK) {
    } else if (size < 8) {
        s = ecc_fail(ECC_ERR_FORMAT, "%s: %llu bytes is too short for a safetensors file (truncated?)", path,
                     (unsigned long long)size);
    } else {
        f->map_len = (size_t)size;
        f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            s = ecc_fail(ECC_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        } else {
            f->mapped = 1;
        }
    }
    if (fd >= 0)
        close(fd);
    if (s == ECC_OK)
        s = validate(f);
    if (s != ECC_OK) {
        ecc_st_close(f);
        return s;
    }
    *out = f;
    return ECC_OK;
}

void ecc_st_close(ecc_st_file *f)
{
    if (!f)
        return;
    if (f->map && f->mapped)
        munmap(f->map, f->map_len);
    for (int i = 0; i < f->n; i++)
        free(f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->tensors);
    free(f->path);
    free(f);
}

uint64_t ecc_st_header_hash(const ecc_st_file *f)
{
    const uint8_t *p = f->map;
    uint64_t hlen = 0, h = 0xcbf29ce484222325ull;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    for (uint64_t i = 0; i < hlen; i++) /* validated: 8 + hlen <= map_len */
        h = (h ^ p[8 + i]) * 0x100000001b3ull;
    return h;
}

const ecc_st_tensor *ecc_st_find(const ecc_st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

const char *ecc_st_meta(const ecc_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

ecc_status ecc_st_to_f32(float *dst, const ecc_st_tensor *t)
{
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ECC_F32:
        memcpy(dst, p, t->nbytes);
        break;
    case ECC_F16:
        for (uint64_t i = 0; i < t->numel; i++)
            dst[i] = ecc_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    case ECC_BF16:
        for (uint64_t i = 0; i < t->numel; i++)
            dst[i] = ecc_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    case ECC_F64:
        for (uint64_t i = 0; i < t->numel; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    default:
        return ecc_fail(ECC_ERR_FORMAT, "tensor '%s' is %s; a floating type (F32, F16, BF16, F64) is needed",
                        t->name, ecc_dtype_name(t->dtype));
    }
    return ECC_OK;
}

void ecc_shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

ecc_status ecc_st_copy(void *dst, const ecc_st_tensor *t, ecc_dtype dtype, int ndim, const int64_t *shape)
{
    int same = t->dtype == dtype && t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[128], got[128];
        ecc_shape_str(want, sizeof want, ndim, shape);
        ecc_shape_str(got, sizeof got, t->ndim, t->shape);
        return ecc_fail(ECC_ERR_FORMAT, "tensor '%s' is %s %s, expected %s %s", t->name, ecc_dtype_name(t->dtype),
                        got, ecc_dtype_name(dtype), want);
    }
    memcpy(dst, t->data, t->nbytes);
    return ECC_OK;
}

/* ---- writer ------------------------------------------------------------- */

void ecc_st_writer_init(ecc_st_writer *w) { memset(w, 0, sizeof *w); }

ecc_status ecc_st_writer_add(ecc_st_writer *w, const char *name, ecc_dtype dtype, int ndim,
                             const int64_t *shape, const void *data)
{
    if (ndim > ECC_ST_MAX_DIMS)
        return ecc_fail(ECC_ERR_INPUT, "tensor '%s': too many dimensions", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        void *e = realloc(w->e, (size_t)cap * sizeof *w->e);
        if (!e)
            return ecc_fail(ECC_ERR_NOMEM, "out of memory adding tensor '%s'", name);
        w->e = e;
        w->cap = cap;
    }
    struct ecc_st_wentry *x = &w->e[w->n];
    memset(x, 0, sizeof *x);
    if (!(x->name = ecc_strdup(name)))
        return ECC_ERR_NOMEM;
    x->dtype = dtype;
    x->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        x->shape[i] = shape[i];
    x->data = data;
    w->n++;
    return ECC_OK;
}

ecc_status ecc_st_writer_meta(ecc_st_writer *w, const char *key, const char *value)
{
    char **k = realloc(w->meta_keys, (size_t)(w->n_meta + 1) * sizeof(char *));
    if (k)
        w->meta_keys = k;
    char **v = realloc(w->meta_values, (size_t)(w->n_meta + 1) * sizeof(char *));
    if (v)
        w->meta_values = v;
    if (!k || !v)
        return ecc_fail(ECC_ERR_NOMEM, "out of memory adding metadata");
    w->meta_keys[w->n_meta] = ecc_strdup(key);
    w->meta_values[w->n_meta] = ecc_strdup(value);
    w->n_meta++;
    return ECC_OK;
}

static uint64_t entry_bytes(const struct ecc_st_wentry *x)
{
    uint64_t n = ecc_dtype_size(x->dtype);
    for (int i = 0; i < x->ndim; i++)
        n *= (uint64_t)x->shape[i];
    return n;
}

ecc_status ecc_st_writer_write_to(ecc_st_writer *w, ecc_atomic_file *af)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return ecc_fail(ECC_ERR_NOMEM, "out of memory writing %s", af->path);
    if (w->n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->n_meta; i++)
            cJSON_AddStringToObject(m, w->meta_keys[i], w->meta_values[i]);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const struct ecc_st_wentry *x = &w->e[i];
        cJSON *t = cJSON_AddObjectToObject(root, x->name);
        cJSON_AddStringToObject(t, "dtype", ecc_dtype_name(x->dtype));
        cJSON *sh = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < x->ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)x->shape[d]));
        uint64_t nb = entry_bytes(x);
        cJSON *o = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json)
        return ecc_fail(ECC_ERR_NOMEM, "out of memory writing %s", af->path);
    /* pad the header with spaces to a multiple of 8 so data stays aligned */
    size_t hl = strlen(json), padded = (hl + 7) & ~(size_t)7;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    ecc_atomic_write(af, len8, 8);
    ecc_atomic_write(af, json, hl);
    ecc_atomic_write(af, "       ", padded - hl);
    for (int i = 0; i < w->n; i++)
        ecc_atomic_write(af, w->e[i].data, entry_bytes(&w->e[i]));
    free(json);
    return ECC_OK; /* a failed write is reported by ecc_atomic_finish */
}

ecc_status ecc_st_writer_write(ecc_st_writer *w, const char *path)
{
    ecc_atomic_file af;
    ECC_TRY(ecc_atomic_open(&af, path));
    ecc_status s = ecc_st_writer_write_to(w, &af);
    if (s != ECC_OK) {
        ecc_atomic_abort(&af);
        return s;
    }
    return ecc_atomic_commit(&af);
}

void ecc_st_writer_free(ecc_st_writer *w)
{
    for (int i = 0; i < w->n; i++)
        free(w->e[i].name);
    free(w->e);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->meta_keys);
    free(w->meta_values);
    memset(w, 0, sizeof *w);
}
