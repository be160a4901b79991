#include "io/st_view.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

ecc_status ecc_st_view(ecc_st_file **out, const ecc_st_writer *w, const char *name)
{
    *out = NULL;
    ecc_st_file *f = ecc_calloc(1, sizeof *f, "a tensor view");
    if (!f)
        return ECC_ERR_NOMEM;
    f->path = ecc_strdup(name);
    f->tensors = ecc_calloc((size_t)(w->n ? w->n : 1), sizeof *f->tensors, "a tensor view");
    f->meta_keys = ecc_calloc((size_t)(w->n_meta ? w->n_meta : 1), sizeof(char *), "a tensor view");
    f->meta_values = ecc_calloc((size_t)(w->n_meta ? w->n_meta : 1), sizeof(char *), "a tensor view");
    ecc_status s = f->path && f->tensors && f->meta_keys && f->meta_values ? ECC_OK : ECC_ERR_NOMEM;
    for (int i = 0; s == ECC_OK && i < w->n; i++, f->n++) {
        const struct ecc_st_wentry *e = &w->e[i];
        ecc_st_tensor *t = &f->tensors[i];
        t->dtype = e->dtype;
        t->ndim = e->ndim;
        uint64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            t->shape[d] = e->shape[d];
            numel *= (uint64_t)e->shape[d]; /* the shape of a buffer already in memory */
        }
        t->numel = numel;
        t->nbytes = numel * ecc_dtype_size(e->dtype);
        t->data = e->data;
        if (!(t->name = ecc_strdup(e->name)))
            s = ECC_ERR_NOMEM;
    }
    for (int i = 0; s == ECC_OK && i < w->n_meta; i++, f->n_meta++) {
        f->meta_keys[i] = ecc_strdup(w->meta_keys[i]);
        f->meta_values[i] = ecc_strdup(w->meta_values[i]);
        if (!f->meta_keys[i] || !f->meta_values[i]) {
            f->n_meta++; /* freed by ecc_st_close */
            s = ECC_ERR_NOMEM;
            break;
        }
    }
    if (s != ECC_OK) {
        ecc_st_close(f);
        return s;
    }
    *out = f;
    return ECC_OK;
}
