/* Fuzz target: the safetensors reader (header JSON, tensor table, offsets)
 * and writer.
 *
 * The input is a whole safetensors file. It is validated from memory
 * (ecc_st_parse, so that ASan sees any read past the input) and through a
 * file (ecc_st_open, the mmap path), which must agree. A file that opens
 * must be safe to use: every tensor's bytes lie inside the input (each is
 * read), conversions work, and writing the table back with the writer gives
 * a file that opens to the same table and bytes. */
#include "fuzz_common.h"

#include "io/safetensors.h"
#include "util.h"

static volatile uint8_t g_sink;

static void check_same(const ecc_st_file *a, const ecc_st_file *b)
{
    FUZZ_CHECK(a->n == b->n, "%d tensors, then %d", a->n, b->n);
    FUZZ_CHECK(a->n_meta == b->n_meta, "%d metadata entries, then %d", a->n_meta, b->n_meta);
    for (int i = 0; i < a->n; i++) {
        const ecc_st_tensor *x = &a->tensors[i], *y = ecc_st_find(b, x->name);
        FUZZ_CHECK(y, "tensor '%s' lost", x->name);
        FUZZ_CHECK(x->dtype == y->dtype && x->ndim == y->ndim && x->nbytes == y->nbytes, "tensor '%s' changed",
                   x->name);
        for (int d = 0; d < x->ndim; d++)
            FUZZ_CHECK(x->shape[d] == y->shape[d], "tensor '%s' dim %d changed", x->name, d);
        FUZZ_CHECK(x->nbytes == 0 || memcmp(x->data, y->data, x->nbytes) == 0, "tensor '%s' bytes changed", x->name);
    }
    for (int i = 0; i < a->n_meta; i++) {
        /* a key given twice: both are kept, and ecc_st_meta finds the first */
        const char *v = ecc_st_meta(b, a->meta_keys[i]);
        FUZZ_CHECK(v && !strcmp(v, ecc_st_meta(a, a->meta_keys[i])), "metadata '%s' changed", a->meta_keys[i]);
    }
}

static void use(const ecc_st_file *f, const uint8_t *data, size_t size)
{
    uint64_t total = 0;
    for (int i = 0; i < f->n; i++) {
        const ecc_st_tensor *t = &f->tensors[i];
        FUZZ_CHECK(ecc_st_find(f, t->name) == t, "ecc_st_find('%s') finds another tensor", t->name);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= ECC_ST_MAX_DIMS, "ndim %d", t->ndim);
        FUZZ_CHECK(t->nbytes == t->numel * ecc_dtype_size(t->dtype), "nbytes");
        FUZZ_CHECK(t->data >= data + 8 && (uint64_t)(t->data - data) + t->nbytes <= size,
                   "tensor '%s' lies outside the input", t->name);
        total += t->nbytes;
        char shape[256];
        ecc_shape_str(shape, sizeof shape, t->ndim, t->shape);
        if (t->nbytes > ((size_t)16 << 20))
            continue;
        /* read every byte: ASan checks the bounds, the sum keeps the reads */
        uint8_t sum = 0;
        for (uint64_t k = 0; k < t->nbytes; k++)
            sum ^= t->data[k];
        g_sink ^= sum;
        void *copy = malloc(t->nbytes ? t->nbytes : 1);
        float *f32 = malloc(t->numel ? t->numel * sizeof(float) : 1);
        if (!copy || !f32)
            abort();
        FUZZ_CHECK(ecc_st_copy(copy, t, t->dtype, t->ndim, t->shape) == ECC_OK, "copy with its own shape fails");
        int64_t other[ECC_ST_MAX_DIMS] = {0};
        ecc_st_copy(copy, t, t->dtype, t->ndim, other); /* a shape mismatch (unless all zeros) is an error */
        if (t->dtype == ECC_F32 || t->dtype == ECC_F16 || t->dtype == ECC_BF16 || t->dtype == ECC_F64)
            FUZZ_CHECK(ecc_st_to_f32(f32, t) == ECC_OK, "to_f32 of a float tensor fails");
        else
            FUZZ_CHECK(ecc_st_to_f32(f32, t) != ECC_OK, "to_f32 of an integer tensor succeeds");
        free(copy);
        free(f32);
    }
    FUZZ_CHECK(total <= size, "the tensors cover more bytes than the input holds");
    ecc_st_find(f, "no such tensor");
    ecc_st_meta(f, "format");
}

/* Write the table back with the writer and read it again. */
static void round_trip(const ecc_st_file *f)
{
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    for (int i = 0; i < f->n; i++) {
        const ecc_st_tensor *t = &f->tensors[i];
        FUZZ_CHECK(ecc_st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data) == ECC_OK, "writer_add: %s",
                   ecc_last_error());
    }
    for (int i = 0; i < f->n_meta; i++)
        FUZZ_CHECK(ecc_st_writer_meta(&w, f->meta_keys[i], f->meta_values[i]) == ECC_OK, "writer_meta");
    char path[1024];
    snprintf(path, sizeof path, "%s/rewritten.safetensors", fuzz_tmpdir());
    ecc_status s = ecc_st_writer_write(&w, path);
    ecc_st_writer_free(&w);
    FUZZ_CHECK(s == ECC_OK, "writing back a valid file fails: %s", ecc_last_error());
    ecc_st_file *g = NULL;
    s = ecc_st_open(&g, path);
    FUZZ_CHECK(s == ECC_OK, "the rewritten file does not open: %s", ecc_last_error());
    check_same(f, g);
    ecc_st_close(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ecc_st_file *f = NULL;
    ecc_status s = ecc_st_parse(&f, "fuzz.safetensors", data, size);
    FUZZ_CHECK((s == ECC_OK) == (f != NULL), "status %d with file %p", (int)s, (void *)f);
    if (s != ECC_OK)
        FUZZ_CHECK(ecc_last_error()[0], "an error without a message");
    /* the mmap path must agree */
    char path[1024];
    fuzz_write(path, sizeof path, "input.safetensors", data, size);
    ecc_st_file *g = NULL;
    ecc_status s2 = ecc_st_open(&g, path);
    FUZZ_CHECK(s2 == s, "ecc_st_parse says %d, ecc_st_open %d", (int)s, (int)s2);
    if (f) {
        use(f, data, size);
        check_same(f, g);
        round_trip(f);
    }
    ecc_st_close(g);
    ecc_st_close(f);
    return 0;
}
