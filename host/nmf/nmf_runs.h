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

#include "io/run_reader.h"
#include "io/safetensors.h"
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

/* The same over runs already open (directories, or runs in memory seen as
 * directories: host/engine/run_api.c), without writing: o->w holds what
 * nmf.safetensors would, borrowing o's buffers (job->dirs and job->out are
 * not used). Free with ecc_nmf_output_free. */
typedef struct ecc_nmf_output {
    ecc_nmf_result res; /* W (T, K), H (K, F') */
    float *factors;     /* (K, T) W transposed */
    int32_t *offsets;   /* (runs + 1) */
    ecc_st_writer w;    /* factors, loadings, offsets and the settings */
} ecc_nmf_output;
ecc_status ecc_nmf_of_runs(ecc_nmf_output *o, ecc_run_dir *const *runs, int n, const ecc_nmf_job *job);
void ecc_nmf_output_free(ecc_nmf_output *o);

/* "random" | "nndsvd" | "nndsvda", "mu" | "hals" (nmf_api.c; eccolo nmf's --init and --solver) */
ecc_status ecc_nmf_parse_init(const char *s, ecc_nmf_init *i);
ecc_status ecc_nmf_parse_solver(const char *s, ecc_nmf_solver *v);
/* Public factors seen as an nmf.safetensors file, borrowing their data (nmf_api.c, for the report). */
ecc_status ecc_factors_view(ecc_st_file **out, const ecc_factors *f);

#endif
