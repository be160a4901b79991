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

/* Read RUN_DIR (run.json + tensors.safetensors) and the NMF file nmf_path
 * (NULL: RUN_DIR/nmf.safetensors when that file exists) and write the page to
 * out_path (NULL: RUN_DIR/report.html), atomically. */
ecc_status ecc_report_write(const char *run_dir, const char *nmf_path, const char *out_path);
/* The same; *bytes_written (when not NULL) receives the page's size. */
ecc_status ecc_report_write_ex(const char *run_dir, const char *nmf_path, const char *out_path,
                               size_t *bytes_written);

#endif
