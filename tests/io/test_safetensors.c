/* safetensors: the writer and reader round-trip every dtype and shape, the
 * half-precision conversions are exact, every malformed file is rejected
 * with ECC_ERR_FORMAT (or ECC_ERR_IO) and a message saying what is wrong,
 * and writes are atomic. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

/* ---- helpers ----------------------------------------------------------------- */

static char *tmp_file(const char *tag, const char *name)
{
    char *dir = test_tmpdir(tag);
    char *p = ecc_path_join(dir, name);
    free(dir);
    return p;
}

/* A hand-made file: the 8-byte little-endian header length, the header, the data. */
static void write_st_raw(const char *path, uint64_t hlen_claimed, const char *header, const void *data,
                         size_t data_len)
{
    size_t hl = strlen(header);
    uint8_t *buf = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(hlen_claimed >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_len)
        memcpy(buf + 8 + hl, data, data_len);
    write_file(path, buf, 8 + hl + data_len);
    free(buf);
}

static void write_st(const char *path, const char *header, const void *data, size_t data_len)
{
    write_st_raw(path, strlen(header), header, data, data_len);
}

/* Open PATH, which must fail with STATUS and a message containing WANT. */
static void expect_reject(const char *path, ecc_status status, const char *want)
{
    ecc_st_file *f = (ecc_st_file *)0x1;
    ecc_status s = ecc_st_open(&f, path);
    cr_assert_eq(s, status, "expected status %d for '%s', got %d: %s", status, want, s, ecc_last_error());
    cr_assert_null(f, "a failed open must leave *out NULL");
    cr_assert(strstr(ecc_last_error(), want), "message '%s' does not contain '%s'", ecc_last_error(), want);
    cr_assert(strstr(ecc_last_error(), path), "message '%s' does not name the file", ecc_last_error());
    cr_assert_null(strchr(ecc_last_error(), '\n'), "message must be one line: '%s'", ecc_last_error());
}

/* A hand-made header with DATA_LEN zero bytes of data, which must be rejected. */
static void reject_header(const char *header, size_t data_len, const char *want)
{
    char *p = tmp_file("st", "bad.safetensors");
    uint8_t *data = calloc(1, data_len + 1);
    write_st(p, header, data, data_len);
    expect_reject(p, ECC_ERR_FORMAT, want);
    free(data);
    free(p);
}

static ecc_st_file *open_ok(const char *path)
{
    ecc_st_file *f = NULL;
    cr_assert_eq(ecc_st_open(&f, path), ECC_OK, "%s", ecc_last_error());
    cr_assert_not_null(f);
    return f;
}

static uint64_t header_len_of(const char *path)
{
    char *data;
    size_t len;
    cr_assert_eq(ecc_read_file(path, 64u << 20, &data, &len), ECC_OK, "%s", ecc_last_error());
    cr_assert_geq(len, 8);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = (h << 8) | (uint8_t)data[i];
    free(data);
    return h;
}

static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp."))
            n++;
    closedir(d);
    return n;
}

/* ---- dtypes -------------------------------------------------------------------- */

Test(safetensors, dtype_names_and_sizes)
{
    static const struct {
        ecc_dtype d;
        const char *name;
        size_t size;
    } k[] = {{ECC_F32, "F32", 4}, {ECC_F16, "F16", 2}, {ECC_BF16, "BF16", 2}, {ECC_F64, "F64", 8},
             {ECC_I64, "I64", 8}, {ECC_I32, "I32", 4}, {ECC_I16, "I16", 2},   {ECC_I8, "I8", 1},
             {ECC_U8, "U8", 1},   {ECC_BOOL, "BOOL", 1}};
    cr_assert_eq(sizeof k / sizeof *k, (size_t)ECC_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        cr_assert_str_eq(ecc_dtype_name(k[i].d), k[i].name);
        cr_assert_eq(ecc_dtype_size(k[i].d), k[i].size, "%s", k[i].name);
    }
    cr_assert_eq(ecc_dtype_size(ECC_DTYPE_COUNT), 0);
    cr_assert_str_eq(ecc_dtype_name(ECC_DTYPE_COUNT), "?");
}

/* ---- round trip -------------------------------------------------------------- */

Test(safetensors, round_trip_every_dtype)
{
    char *dir = test_tmpdir("st");
    char *path = ecc_path_join(dir, "all.safetensors");
    ecc_st_writer w;
    ecc_st_writer_init(&w);

    /* one tensor per dtype, shape [2, 3] with an odd byte pattern each */
    uint8_t bufs[ECC_DTYPE_COUNT][6 * 8];
    int64_t shape23[2] = {2, 3};
    char names[ECC_DTYPE_COUNT][32];
    for (int d = 0; d < ECC_DTYPE_COUNT; d++) {
        size_t nb = 6 * ecc_dtype_size((ecc_dtype)d);
        for (size_t i = 0; i < nb; i++)
            bufs[d][i] = (uint8_t)(17 * d + 31 * i + 5);
        if (d == ECC_BOOL)
            for (size_t i = 0; i < nb; i++)
                bufs[d][i] = (uint8_t)(i & 1);
        snprintf(names[d], sizeof names[d], "t_%s", ecc_dtype_name((ecc_dtype)d));
        cr_assert_eq(ecc_st_writer_add(&w, names[d], (ecc_dtype)d, 2, shape23, bufs[d]), ECC_OK, "%s",
                     ecc_last_error());
    }
    /* a 0-d scalar, a tensor with a zero-size dimension, a 1-d and an 8-d one */
    double scalar = -3.25;
    cr_assert_eq(ecc_st_writer_add(&w, "scalar", ECC_F64, 0, NULL, &scalar), ECC_OK, "%s", ecc_last_error());
    int64_t shape_empty[3] = {3, 0, 2};
    cr_assert_eq(ecc_st_writer_add(&w, "empty", ECC_F32, 3, shape_empty, NULL), ECC_OK, "%s", ecc_last_error());
    int32_t ints[5] = {-1, 0, 1, INT32_MAX, INT32_MIN};
    int64_t shape5 = 5;
    cr_assert_eq(ecc_st_writer_add(&w, "ints", ECC_I32, 1, &shape5, ints), ECC_OK, "%s", ecc_last_error());
    int64_t shape8[8] = {1, 2, 1, 2, 1, 2, 1, 1};
    uint8_t bytes8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cr_assert_eq(ecc_st_writer_add(&w, "eight_dims", ECC_U8, 8, shape8, bytes8), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(ecc_st_writer_meta(&w, "format", "eccolo"), ECC_OK);
    cr_assert_eq(ecc_st_writer_meta(&w, "note", "a \"quoted\" value, with unicode \xc3\xa9"), ECC_OK);
    cr_assert_eq(ecc_st_writer_write(&w, path), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer_free(&w);

    cr_assert_eq(header_len_of(path) % 8, 0, "header length %llu is not a multiple of 8",
                 (unsigned long long)header_len_of(path));
    cr_assert_eq(count_tmp_files(dir), 0, "temporary files left in %s", dir);

    ecc_st_file *f = open_ok(path);
    cr_assert_eq(f->n, ECC_DTYPE_COUNT + 4);
    for (int d = 0; d < ECC_DTYPE_COUNT; d++) {
        const ecc_st_tensor *t = ecc_st_find(f, names[d]);
        cr_assert_not_null(t, "%s missing", names[d]);
        cr_assert_eq(t->dtype, (ecc_dtype)d, "%s", names[d]);
        cr_assert_eq(t->ndim, 2);
        cr_assert_eq(t->shape[0], 2);
        cr_assert_eq(t->shape[1], 3);
        cr_assert_eq(t->numel, 6);
        cr_assert_eq(t->nbytes, 6 * ecc_dtype_size((ecc_dtype)d));
        cr_assert_eq(memcmp(t->data, bufs[d], t->nbytes), 0, "%s: data differ", names[d]);
    }
    const ecc_st_tensor *t = ecc_st_find(f, "scalar");
    cr_assert_not_null(t);
    cr_assert_eq(t->ndim, 0);
    cr_assert_eq(t->numel, 1);
    cr_assert_eq(t->nbytes, 8);
    cr_assert_eq(memcmp(t->data, &scalar, 8), 0);

    t = ecc_st_find(f, "empty");
    cr_assert_not_null(t);
    cr_assert_eq(t->ndim, 3);
    cr_assert_eq(t->shape[0], 3);
    cr_assert_eq(t->shape[1], 0);
    cr_assert_eq(t->shape[2], 2);
    cr_assert_eq(t->numel, 0);
    cr_assert_eq(t->nbytes, 0);

    t = ecc_st_find(f, "ints");
    cr_assert_not_null(t);
    int32_t back[5];
    cr_assert_eq(ecc_st_copy(back, t, ECC_I32, 1, &shape5), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(memcmp(back, ints, sizeof ints), 0);

    t = ecc_st_find(f, "eight_dims");
    cr_assert_not_null(t);
    cr_assert_eq(t->ndim, 8);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(t->shape[i], shape8[i]);
    cr_assert_eq(t->numel, 8);
    cr_assert_eq(memcmp(t->data, bytes8, 8), 0);

    cr_assert_null(ecc_st_find(f, "nope"));
    cr_assert_null(ecc_st_find(f, "__metadata__"), "__metadata__ is not a tensor");
    cr_assert_eq(f->n_meta, 2);
    cr_assert_str_eq(ecc_st_meta(f, "format"), "eccolo");
    cr_assert_str_eq(ecc_st_meta(f, "note"), "a \"quoted\" value, with unicode \xc3\xa9");
    cr_assert_null(ecc_st_meta(f, "missing"));
    ecc_st_close(f);
    free(path);
    free(dir);
}

Test(safetensors, round_trip_empty_file_and_no_metadata)
{
    char *path = tmp_file("st", "empty.safetensors");
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    cr_assert_eq(ecc_st_writer_write(&w, path), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer_free(&w);
    cr_assert_eq(header_len_of(path) % 8, 0);
    ecc_st_file *f = open_ok(path);
    cr_assert_eq(f->n, 0);
    cr_assert_eq(f->n_meta, 0);
    cr_assert_null(ecc_st_meta(f, "format"));
    ecc_st_close(f);
    free(path);
}

Test(safetensors, header_length_is_multiple_of_8_for_every_name_length)
{
    char *dir = test_tmpdir("st");
    char *path = ecc_path_join(dir, "pad.safetensors");
    float v = 1.5f;
    int64_t one = 1;
    for (int len = 1; len <= 9; len++) {
        char name[16];
        memset(name, 'a', (size_t)len);
        name[len] = '\0';
        ecc_st_writer w;
        ecc_st_writer_init(&w);
        cr_assert_eq(ecc_st_writer_add(&w, name, ECC_F32, 1, &one, &v), ECC_OK);
        cr_assert_eq(ecc_st_writer_write(&w, path), ECC_OK, "%s", ecc_last_error());
        ecc_st_writer_free(&w);
        cr_assert_eq(header_len_of(path) % 8, 0, "name length %d", len);
        ecc_st_file *f = open_ok(path);
        const ecc_st_tensor *t = ecc_st_find(f, name);
        cr_assert_not_null(t);
        cr_assert_eq(((uintptr_t)t->data - (uintptr_t)f->map) % 8, 0, "data not 8-byte aligned in the file");
        cr_assert_eq(memcmp(t->data, &v, 4), 0);
        ecc_st_close(f);
    }
    cr_assert_eq(count_tmp_files(dir), 0);
    free(path);
    free(dir);
}

Test(safetensors, writer_rejects_too_many_dims)
{
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    int64_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    uint8_t b = 0;
    cr_assert_neq(ecc_st_writer_add(&w, "x", ECC_U8, 9, shape, &b), ECC_OK);
    cr_assert(strstr(ecc_last_error(), "dimensions"), "%s", ecc_last_error());
    ecc_st_writer_free(&w);
}

Test(safetensors, copy_checks_dtype_and_shape)
{
    char *path = tmp_file("st", "copy.safetensors");
    float v[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    cr_assert_eq(ecc_st_writer_add(&w, "m", ECC_F32, 2, shape, v), ECC_OK);
    cr_assert_eq(ecc_st_writer_write(&w, path), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer_free(&w);
    ecc_st_file *f = open_ok(path);
    const ecc_st_tensor *t = ecc_st_find(f, "m");
    float out[6];
    int64_t wrong[2] = {3, 2};
    cr_assert_eq(ecc_st_copy(out, t, ECC_F32, 2, wrong), ECC_ERR_FORMAT);
    cr_assert(strstr(ecc_last_error(), "[2, 3]") && strstr(ecc_last_error(), "[3, 2]"), "%s", ecc_last_error());
    cr_assert_eq(ecc_st_copy(out, t, ECC_I32, 2, shape), ECC_ERR_FORMAT);
    cr_assert(strstr(ecc_last_error(), "I32"), "%s", ecc_last_error());
    cr_assert_eq(ecc_st_copy(out, t, ECC_F32, 1, shape), ECC_ERR_FORMAT);
    cr_assert_eq(ecc_st_copy(out, t, ECC_F32, 2, shape), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(memcmp(out, v, sizeof v), 0);
    ecc_st_close(f);
    free(path);
}

/* ---- half precision ------------------------------------------------------------ */

Test(safetensors, f16_known_values)
{
    cr_assert_eq(ecc_f16_to_f32(0x3C00), 1.0f);
    cr_assert_eq(ecc_f16_to_f32(0xC000), -2.0f);
    cr_assert_eq(ecc_f16_to_f32(0x3555), 0x1.554p-2f); /* 0.333251953125 */
    cr_assert_eq(ecc_f16_to_f32(0x7BFF), 65504.0f);
    cr_assert_eq(ecc_f16_to_f32(0xFBFF), -65504.0f);
    cr_assert_eq(ecc_f16_to_f32(0x0400), 0x1p-14f); /* smallest normal */
    cr_assert_eq(ecc_f16_to_f32(0x0001), 0x1p-24f); /* smallest subnormal */
    cr_assert_eq(ecc_f16_to_f32(0x8001), -0x1p-24f);
    cr_assert_eq(ecc_f16_to_f32(0x0200), 0x1p-15f);
    cr_assert_eq(ecc_f16_to_f32(0x03FF), 1023.0f * 0x1p-24f); /* largest subnormal */
    float pz = ecc_f16_to_f32(0x0000), nz = ecc_f16_to_f32(0x8000);
    cr_assert(pz == 0.0f && !signbit(pz));
    cr_assert(nz == 0.0f && signbit(nz), "-0 must keep its sign");
    float pi = ecc_f16_to_f32(0x7C00), ni = ecc_f16_to_f32(0xFC00);
    cr_assert(isinf(pi) && pi > 0);
    cr_assert(isinf(ni) && ni < 0);
    cr_assert(isnan(ecc_f16_to_f32(0x7E00)));
    cr_assert(isnan(ecc_f16_to_f32(0x7C01)), "a NaN with only the low mantissa bit set stays NaN");
    cr_assert(isnan(ecc_f16_to_f32(0xFE00)));
}

Test(safetensors, f16_every_finite_value_matches_its_definition)
{
    /* value = (-1)^s * 2^(e-15) * (1 + m/1024), or 2^-14 * m/1024 when e == 0 */
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF;
        if (e == 0x1F)
            continue;
        double v = e ? ldexp(1.0 + m / 1024.0, (int)e - 15) : ldexp(m / 1024.0, -14);
        if (h & 0x8000)
            v = -v;
        float got = ecc_f16_to_f32((uint16_t)h);
        cr_assert_eq((double)got, v, "0x%04X: got %a, expected %a", h, (double)got, v);
    }
}

Test(safetensors, bf16_known_values)
{
    cr_assert_eq(ecc_bf16_to_f32(0x3F80), 1.0f);
    cr_assert_eq(ecc_bf16_to_f32(0xC000), -2.0f);
    cr_assert_eq(ecc_bf16_to_f32(0x4780), 65536.0f);
    cr_assert_eq(ecc_bf16_to_f32(0x477F), 65280.0f);
    cr_assert_eq(ecc_bf16_to_f32(0x7F7F), 0x1.FEp127f); /* largest finite */
    cr_assert_eq(ecc_bf16_to_f32(0x0001), 0x1p-133f);   /* smallest subnormal */
    cr_assert_eq(ecc_bf16_to_f32(0x007F), 127.0f * 0x1p-133f); /* largest subnormal */
    float pz = ecc_bf16_to_f32(0x0000), nz = ecc_bf16_to_f32(0x8000);
    cr_assert(pz == 0.0f && !signbit(pz));
    cr_assert(nz == 0.0f && signbit(nz), "-0 must keep its sign");
    float pi = ecc_bf16_to_f32(0x7F80), ni = ecc_bf16_to_f32(0xFF80);
    cr_assert(isinf(pi) && pi > 0);
    cr_assert(isinf(ni) && ni < 0);
    cr_assert(isnan(ecc_bf16_to_f32(0x7FC0)));
    cr_assert(isnan(ecc_bf16_to_f32(0x7F81)));
    cr_assert(isnan(ecc_bf16_to_f32(0xFFC0)));
}

Test(safetensors, to_f32_from_every_float_dtype)
{
    char *path = tmp_file("st", "floats.safetensors");
    uint16_t f16[6] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x7C00};
    uint16_t bf16[6] = {0x3F80, 0xC000, 0x4780, 0x0001, 0x8000, 0xFF80};
    double f64[6] = {1.0, -2.0, 0.1, 1e300, -0.0, 3.5};
    float f32[6] = {1.0f, -2.0f, 0.1f, 1e-40f, -0.0f, 3.5f};
    int32_t i32[6] = {1, 2, 3, 4, 5, 6};
    /* the data is written little-endian: these hosts are little-endian */
    int64_t shape[2] = {3, 2};
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    cr_assert_eq(ecc_st_writer_add(&w, "f16", ECC_F16, 2, shape, f16), ECC_OK);
    cr_assert_eq(ecc_st_writer_add(&w, "bf16", ECC_BF16, 2, shape, bf16), ECC_OK);
    cr_assert_eq(ecc_st_writer_add(&w, "f64", ECC_F64, 2, shape, f64), ECC_OK);
    cr_assert_eq(ecc_st_writer_add(&w, "f32", ECC_F32, 2, shape, f32), ECC_OK);
    cr_assert_eq(ecc_st_writer_add(&w, "i32", ECC_I32, 2, shape, i32), ECC_OK);
    cr_assert_eq(ecc_st_writer_write(&w, path), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer_free(&w);

    ecc_st_file *f = open_ok(path);
    float out[6];
    cr_assert_eq(ecc_st_to_f32(out, ecc_st_find(f, "f16")), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -2.0f);
    cr_assert_eq(out[2], 65504.0f);
    cr_assert_eq(out[3], 0x1p-24f);
    cr_assert(out[4] == 0.0f && signbit(out[4]));
    cr_assert(isinf(out[5]) && out[5] > 0);

    cr_assert_eq(ecc_st_to_f32(out, ecc_st_find(f, "bf16")), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -2.0f);
    cr_assert_eq(out[2], 65536.0f);
    cr_assert_eq(out[3], 0x1p-133f);
    cr_assert(out[4] == 0.0f && signbit(out[4]));
    cr_assert(isinf(out[5]) && out[5] < 0);

    cr_assert_eq(ecc_st_to_f32(out, ecc_st_find(f, "f64")), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -2.0f);
    cr_assert_eq(out[2], 0.1f);
    cr_assert(isinf(out[3]), "1e300 overflows fp32 to inf, got %g", (double)out[3]);
    cr_assert(out[4] == 0.0f && signbit(out[4]));
    cr_assert_eq(out[5], 3.5f);

    cr_assert_eq(ecc_st_to_f32(out, ecc_st_find(f, "f32")), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(memcmp(out, f32, sizeof f32), 0);

    cr_assert_eq(ecc_st_to_f32(out, ecc_st_find(f, "i32")), ECC_ERR_FORMAT);
    cr_assert(strstr(ecc_last_error(), "i32") && strstr(ecc_last_error(), "I32"), "%s", ecc_last_error());
    ecc_st_close(f);
    free(path);
}

/* ---- rejection ---------------------------------------------------------------- */

Test(safetensors, reject_missing_file_and_directory)
{
    char *dir = test_tmpdir("st");
    char *p = ecc_path_join(dir, "nope.safetensors");
    expect_reject(p, ECC_ERR_IO, "cannot open");
    expect_reject(dir, ECC_ERR_IO, "not a regular file");
    free(p);
    free(dir);
}

Test(safetensors, reject_shorter_than_8_bytes)
{
    char *p = tmp_file("st", "short.safetensors");
    write_file(p, "\x02\0\0\0", 4);
    expect_reject(p, ECC_ERR_FORMAT, "too short");
    write_file(p, "", 0);
    expect_reject(p, ECC_ERR_FORMAT, "0 bytes is too short");
    free(p);
}

Test(safetensors, reject_header_over_100mb)
{
    char *p = tmp_file("st", "huge.safetensors");
    write_st_raw(p, (100u << 20) + 1, "{}", NULL, 0);
    expect_reject(p, ECC_ERR_FORMAT, "larger than");
    write_st_raw(p, UINT64_MAX, "{}", NULL, 0);
    expect_reject(p, ECC_ERR_FORMAT, "larger than");
    free(p);
}

Test(safetensors, reject_header_past_end_of_file)
{
    char *p = tmp_file("st", "past.safetensors");
    write_st_raw(p, 3, "{}", NULL, 0); /* 2 header bytes present, 3 claimed */
    expect_reject(p, ECC_ERR_FORMAT, "runs past the end");
    write_st_raw(p, 4096, "{\"a\":{}}", NULL, 0);
    expect_reject(p, ECC_ERR_FORMAT, "runs past the end");
    free(p);
}

Test(safetensors, reject_header_not_json_or_not_object)
{
    reject_header("{\"a\": {\"dtype\": \"F32\"", 0, "not a JSON object");
    reject_header("this is not json", 0, "not a JSON object");
    reject_header("[1, 2, 3]", 0, "not a JSON object");
    reject_header("\"string\"", 0, "not a JSON object");
    char *p = tmp_file("st", "zero.safetensors");
    write_st(p, "", NULL, 0); /* a zero-length header */
    expect_reject(p, ECC_ERR_FORMAT, "not a JSON object");
    free(p);
}

Test(safetensors, reject_bad_tensor_entries)
{
    reject_header("{\"a\": {\"dtype\": \"F8_E4M3\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2,
                  "unknown dtype 'F8_E4M3'");
    reject_header("{\"a\": {\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "unknown dtype 'f32'");
    reject_header("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "needs a dtype string");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, "shape array");
    reject_header("{\"a\": [1, 2]}", 4, "needs a dtype string");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "needs data_offsets");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4, "needs data_offsets");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, \"4\"]}}", 4,
                  "invalid data offset");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4, "invalid data offset");
    reject_header("{\"__metadata__\": {\"k\": 1}}", 0, "__metadata__ value 'k' is not a string");
    reject_header("{\"__metadata__\": [\"k\"]}", 0, "__metadata__ must be an object");
}

/* A second __metadata__ object used to overrun the arrays sized for the first. */
Test(safetensors, reject_duplicate_metadata)
{
    reject_header("{\"__metadata__\": {\"a\": \"1\"}, \"__metadata__\": {\"b\": \"2\", \"c\": \"3\"}}", 0,
                  "__metadata__ appears more than once");
}

Test(safetensors, reject_duplicate_tensor_names)
{
    /* the two byte ranges tile the data, so only the name check can catch it */
    reject_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, "appears more than once");
}

Test(safetensors, reject_bad_dimensions)
{
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 0]}}", 0,
                  "'a' has an invalid dimension");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 10]}}", 10,
                  "'a' has an invalid dimension");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", 8,
                  "'a' has an invalid dimension");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1e30], \"data_offsets\": [0, 8]}}", 8,
                  "'a' has an invalid dimension");
}

Test(safetensors, reject_shape_overflow)
{
    /* 2^32 * 2^32 = 2^64 elements */
    reject_header("{\"a\": {\"dtype\": \"U8\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8,
                  "overflows 64 bits");
    /* 2^53 * 2^11 = 2^64 elements, after dims that each fit */
    reject_header("{\"a\": {\"dtype\": \"U8\", \"shape\": [9007199254740992, 1024, 2], \"data_offsets\": [0, 8]}}", 8,
                  "product of its shape overflows");
    /* 2^62 elements fit, their 2^64 bytes as F32 do not */
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 1073741824], \"data_offsets\": [0, 8]}}", 8,
                  "byte size overflows");
}

Test(safetensors, reject_too_many_dims)
{
    reject_header("{\"a\": {\"dtype\": \"U8\", \"shape\": [1, 1, 1, 1, 1, 1, 1, 1, 1], \"data_offsets\": [0, 1]}}", 1,
                  "9 dimensions (at most 8)");
}

Test(safetensors, reject_offsets_past_data)
{
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 8,
                  "spans bytes [0, 16) of data but the file holds 8 data bytes");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]},"
                  " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                  " \"c\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
                  8, "'c' spans bytes [8, 12)");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [9007199254740000, "
                  "9007199254740004]}}", 4, "truncated or corrupt");
}

Test(safetensors, reject_begin_after_end)
{
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8, "spans bytes [8, 4)");
}

Test(safetensors, reject_byte_count_mismatch)
{
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8,
                  "'a' is F32 with 3 elements (12 bytes) but its offsets span 8 bytes");
    reject_header("{\"a\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [0, 4]}}", 4,
                  "(2 bytes) but its offsets span 4 bytes");
    reject_header("{\"a\": {\"dtype\": \"F64\", \"shape\": [0, 5], \"data_offsets\": [0, 8]}}", 8,
                  "(0 bytes) but its offsets span 8 bytes");
}

Test(safetensors, reject_overlap)
{
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                  " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                  12, "'b' overlaps the tensor before it");
    /* two tensors on the same bytes */
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                  " \"b\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                  8, "overlaps");
}

Test(safetensors, reject_hole)
{
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                  " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
                  12, "4 unused bytes before tensor 'b'");
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
                  "4 unused bytes before tensor 'a'");
}

Test(safetensors, reject_trailing_data)
{
    reject_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 12,
                  "the tensors cover 4 data bytes but the file holds 12");
    reject_header("{}", 3, "the tensors cover 0 data bytes but the file holds 3");
}

Test(safetensors, accepts_hand_made_valid_file)
{
    /* the same checks, on a file that passes them: out of order offsets,
     * a zero-size tensor, unaligned data after an odd header length */
    char *p = tmp_file("st", "good.safetensors");
    const char *h = "{\"b\": {\"dtype\": \"I16\", \"shape\": [2], \"data_offsets\": [4, 8]},"
                    " \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 8]},"
                    " \"a\": {\"dtype\": \"U8\", \"shape\": [2, 2], \"data_offsets\": [0, 4]},"
                    " \"__metadata__\": {\"k\": \"v\"}}";
    uint8_t data[8] = {1, 2, 3, 4, 0x34, 0x12, 0xFF, 0xFF};
    write_st(p, h, data, sizeof data);
    ecc_st_file *f = open_ok(p);
    cr_assert_eq(f->n, 3);
    const ecc_st_tensor *a = ecc_st_find(f, "a"), *b = ecc_st_find(f, "b"), *z = ecc_st_find(f, "z");
    cr_assert(a && b && z);
    cr_assert_eq(memcmp(a->data, data, 4), 0);
    int16_t bv[2];
    memcpy(bv, b->data, 4);
    cr_assert_eq(bv[0], 0x1234);
    cr_assert_eq(bv[1], -1);
    cr_assert_eq(z->numel, 0);
    cr_assert_str_eq(ecc_st_meta(f, "k"), "v");
    ecc_st_close(f);
    free(p);
}

/* ---- atomic writes -------------------------------------------------------------- */

Test(safetensors, write_replaces_existing_file_atomically)
{
    char *dir = test_tmpdir("st");
    char *path = ecc_path_join(dir, "out.safetensors");
    write_file(path, "old contents that are not a safetensors file at all", 51);
    float a[3] = {1, 2, 3};
    int64_t n3 = 3;
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    cr_assert_eq(ecc_st_writer_add(&w, "a", ECC_F32, 1, &n3, a), ECC_OK);
    cr_assert_eq(ecc_st_writer_write(&w, path), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer_free(&w);
    ecc_st_file *f = open_ok(path);
    cr_assert_eq(f->n, 1);
    cr_assert_eq(memcmp(ecc_st_find(f, "a")->data, a, sizeof a), 0);
    ecc_st_close(f);

    /* and once more over a valid file, with fewer bytes */
    int8_t b = -7;
    ecc_st_writer_init(&w);
    cr_assert_eq(ecc_st_writer_add(&w, "b", ECC_I8, 0, NULL, &b), ECC_OK);
    cr_assert_eq(ecc_st_writer_write(&w, path), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer_free(&w);
    f = open_ok(path);
    cr_assert_eq(f->n, 1);
    cr_assert_null(ecc_st_find(f, "a"));
    cr_assert_eq(*(const int8_t *)ecc_st_find(f, "b")->data, -7);
    ecc_st_close(f);

    cr_assert_eq(count_tmp_files(dir), 0, "a *.tmp.* file was left in %s", dir);
    free(path);
    free(dir);
}

Test(safetensors, write_into_missing_directory_fails_cleanly)
{
    char *dir = test_tmpdir("st");
    char *path = ecc_path_join(dir, "no/such/dir/out.safetensors");
    uint8_t b = 1;
    int64_t one = 1;
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    cr_assert_eq(ecc_st_writer_add(&w, "b", ECC_U8, 1, &one, &b), ECC_OK);
    cr_assert_eq(ecc_st_writer_write(&w, path), ECC_ERR_IO);
    cr_assert(strstr(ecc_last_error(), "out.safetensors"), "%s", ecc_last_error());
    ecc_st_writer_free(&w);
    cr_assert_eq(count_tmp_files(dir), 0);
    free(path);
    free(dir);
}
