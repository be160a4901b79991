/* eccolo report: one self-contained HTML page (inline CSS, JS and data; no
 * network, works from file://) with the interactive views of a run, as Ecco
 * draws them in a notebook: input saliency, NMF factors, logit-lens rankings
 * and layer predictions, neuron activations, attention. Each view is present
 * only when the run (or the NMF file) holds its data. What is embedded, and
 * how it is quantised to keep a gpt2-sized run small, is described at the top
 * of report_data.c. */
#ifndef ECC_REPORT_H
#define ECC_REPORT_H

#include <stddef.h>

#include "eccolo.h"
#include "io/run_reader.h"
#include "io/safetensors.h"

/* Read RUN_DIR (run.json + tensors.safetensors) and the NMF file nmf_path
 * (NULL: RUN_DIR/nmf.safetensors when that file exists) and write the page to
 * out_path (NULL: RUN_DIR/report.html), atomically. */
ecc_status ecc_report_write(const char *run_dir, const char *nmf_path, const char *out_path);
/* The same; *bytes_written (when not NULL) receives the page's size. */
ecc_status ecc_report_write_ex(const char *run_dir, const char *nmf_path, const char *out_path,
                               size_t *bytes_written);

/* The page of a run open as a directory (or a run in memory seen as one:
 * host/engine/run_api.c) with NMF factors (NULL: none), written through OUT;
 * SHOW (NULL or a JSON object) is what the page opens on (META.show). A
 * failed write of the sink stops the page; its owner reports it. */
typedef struct ecc_report_sink {
    int (*write)(void *ctx, const void *p, size_t n); /* 1 while every write succeeded */
    void *ctx;
} ecc_report_sink;
ecc_status ecc_report_page(const ecc_run_dir *r, const ecc_st_file *nmf, const char *show, ecc_report_sink *out);

#endif
