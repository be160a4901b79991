/* NMF over the activations of one or more run directories: builds X with
 * rows = the positions of every run, one after another, and columns =
 * (layer, neuron) for the chosen layers, factorises it, and writes
 * nmf.safetensors:
 *   factors  F32 [K, T_total]  per-token factor strengths (W^T, Ecco's view)
 *   loadings F32 [K, F']       F' = (to - from) * F, columns layer-major
 *   offsets  I32 [n_runs + 1]  where each run's positions start
 * with metadata: relative_error, iterations, seconds, layer_from, layer_to,
 * init, solver, n_components, tol, max_iter, seed, runs (JSON array of the
 * directories) and run_ids (JSON array of their run ids, "" for a run written
 * before run ids): a report embeds the factors only into a run they name. */
#ifndef ECC_NMF_RUNS_H
#define ECC_NMF_RUNS_H

#include "nmf/nmf.h"

typedef struct ecc_nmf_job {
    const char *const *dirs;
    int n_dirs;
    int layer_from, layer_to; /* absolute layer indices; -1 = the captured range */
    ecc_nmf_options nmf;
    ecc_device device;
    int threads;
    const char *out;          /* NULL: dirs[0]/nmf.safetensors */
} ecc_nmf_job;

/* On success *out_path (malloc'd) names the file written and *res (if not
 * NULL) holds the result. */
ecc_status ecc_nmf_runs(const ecc_nmf_job *job, ecc_nmf_result *res, char **out_path);

#endif
