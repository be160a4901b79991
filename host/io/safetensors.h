/* safetensors: a memory-mapped reader that validates everything before use,
 * and a writer (header JSON + data, written atomically).
 *
 * Format: u64 little-endian N, then N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "string value"}}
 * then the data; offsets are relative to the start of the data. */
#ifndef ECC_SAFETENSORS_H
#define ECC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "eccolo.h"

#define ECC_ST_MAX_HEADER (100u << 20) /* as the format's reference implementation */
#define ECC_ST_MAX_TENSORS (1 << 20)
#define ECC_ST_MAX_DIMS 8

typedef enum ecc_dtype {
    ECC_F32, ECC_F16, ECC_BF16, ECC_F64, ECC_I64, ECC_I32, ECC_I16, ECC_I8, ECC_U8, ECC_BOOL,
    ECC_DTYPE_COUNT
} ecc_dtype;

const char *ecc_dtype_name(ecc_dtype d);
size_t ecc_dtype_size(ecc_dtype d);

typedef struct ecc_st_tensor {
    char *name;
    ecc_dtype dtype;
    int ndim;
    int64_t shape[ECC_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t nbytes;
    const uint8_t *data; /* inside the mapping; not necessarily aligned */
} ecc_st_tensor;

typedef struct ecc_st_file {
    char *path;
    void *map;
    size_t map_len;
    int mapped; /* 1: map is an mmap of the file (ecc_st_open); 0: borrowed (ecc_st_parse) */
    int n;
    ecc_st_tensor *tensors;
    int n_meta;
    char **meta_keys, **meta_values;
} ecc_st_file;

/* Open and validate: header length inside the file and at most 100 MB, valid
 * JSON, known dtypes, shapes whose byte size matches the offsets without
 * overflow, offsets inside the data and neither overlapping nor leaving holes. */
ecc_status ecc_st_open(ecc_st_file **out, const char *path);
/* The same checks on an image already in memory (data[0..len), borrowed: it
 * must outlive *out; name is used in messages). ecc_st_open maps the file and
 * validates it with this code; the fuzz target calls it on its input. */
ecc_status ecc_st_parse(ecc_st_file **out, const char *name, const uint8_t *data, size_t len);
void ecc_st_close(ecc_st_file *f);
/* FNV-1a 64 of the header's JSON bytes (which hold every name, shape and
 * offset): with the file's size, what run.json records to pair itself with
 * its tensors.safetensors. */
uint64_t ecc_st_header_hash(const ecc_st_file *f);
const ecc_st_tensor *ecc_st_find(const ecc_st_file *f, const char *name);
const char *ecc_st_meta(const ecc_st_file *f, const char *key);

/* Convert a floating tensor (F32, F16, BF16, F64) to fp32. */
ecc_status ecc_st_to_f32(float *dst, const ecc_st_tensor *t);
/* Read a tensor of the given dtype and exact shape into dst (copy). */
ecc_status ecc_st_copy(void *dst, const ecc_st_tensor *t, ecc_dtype dtype, int ndim, const int64_t *shape);

/* "[d0, d1, ...]" into buf. */
void ecc_shape_str(char *buf, size_t len, int ndim, const int64_t *shape);

float ecc_f16_to_f32(uint16_t h);
float ecc_bf16_to_f32(uint16_t h);

/* ---- writer: collects (name, dtype, shape, pointer) and writes them ---- */
typedef struct ecc_st_writer {
    int n, cap;
    struct ecc_st_wentry {
        char *name;
        ecc_dtype dtype;
        int ndim;
        int64_t shape[ECC_ST_MAX_DIMS];
        const void *data; /* borrowed until write */
    } *e;
    int n_meta;
    char **meta_keys, **meta_values;
} ecc_st_writer;

void ecc_st_writer_init(ecc_st_writer *w);
/* The data pointer is borrowed: it must stay valid until ecc_st_writer_write. */
ecc_status ecc_st_writer_add(ecc_st_writer *w, const char *name, ecc_dtype dtype, int ndim,
                             const int64_t *shape, const void *data);
ecc_status ecc_st_writer_meta(ecc_st_writer *w, const char *key, const char *value);
/* Write to PATH.tmp.<pid> and rename over PATH (ecc_atomic_commit: any
 * failed write is an error and leaves PATH as it was). */
ecc_status ecc_st_writer_write(ecc_st_writer *w, const char *path);
/* Write the file's bytes into an open atomic file (util.h), whose caller
 * finishes and renames it (or aborts it): for files committed together. A
 * failed write is recorded in af and reported by ecc_atomic_finish. */
struct ecc_atomic_file;
ecc_status ecc_st_writer_write_to(ecc_st_writer *w, struct ecc_atomic_file *af);
void ecc_st_writer_free(ecc_st_writer *w);

#endif
