/* eccolo nmf RUN_DIR... : factorise the activations of one or more runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/batch.h"
#include "cli/cli.h"
#include "nmf/nmf_runs.h"
#include "util.h"

static const char *k_help =
    "usage: eccolo nmf RUN_DIR [RUN_DIR...] --components K [options]\n"
    "\n"
    "Non-negative matrix factorisation of the MLP activations of runs written by\n"
    "eccolo generate --activations --out RUN_DIR, as Ecco groups neurons: X = max(activations, 0)\n"
    "with rows = positions (of all runs, one after another) and columns = (layer, neuron).\n"
    "\n"
    "  --components K          number of factors (required)\n"
    "  --from-layer a          first layer (default: the first captured)\n"
    "  --to-layer b            one past the last layer (default: the captured range)\n"
    "  --init random|nndsvd|nndsvda   initialisation (default random, as Ecco)\n"
    "  --solver mu|hals        multiplicative updates (default) or HALS coordinate descent\n"
    "  --max-iter N            (default 500)\n"
    "  --tol X                 stop when the error improves by less than X of the initial\n"
    "                          error over 10 iterations (default 1e-4)\n"
    "  --seed S                seed of the random initialisation (default 0)\n"
    "  --device auto|cpu|cuda  --threads N\n"
    "  --out FILE              (default RUN_DIR/nmf.safetensors of the first run)\n"
    "  --quiet                 do not print the summary line\n"
    "\n"
    "Writes factors F32 [K, T_total], loadings F32 [K, F'] and offsets I32 [runs + 1], with the\n"
    "relative error ||X - WH||_F / ||X||_F, iterations and settings as metadata.\n";

int cmd_nmf(int argc, char **argv)
{
    ecc_nmf_job job;
    memset(&job, 0, sizeof job);
    ecc_nmf_options_default(&job.nmf);
    job.nmf.k = 0;
    job.layer_from = job.layer_to = -1;
    const char **dirs = calloc((size_t)argc, sizeof(char *));
    int n = 0;
    if (!dirs)
        return cli_error("out of memory");
    cli_args a = {argc, 1, argv, "nmf"};
    int rc = 0, quiet = 0;
    for (; a.i < argc && !rc; a.i++) {
        const char *v = NULL;
        int r;
#define OPT(name) ((r = cli_opt(&a, name, &v)) < 0 ? -1 : r)
        if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
            fputs(k_help, stdout);
            free(dirs);
            return 0;
        } else if ((r = OPT("--components"))) {
            rc = r < 0 || cli_int("--components", v, 1, 1 << 20, &job.nmf.k);
        } else if ((r = OPT("--from-layer"))) {
            rc = r < 0 || cli_int("--from-layer", v, 0, 1 << 20, &job.layer_from);
        } else if ((r = OPT("--to-layer"))) {
            rc = r < 0 || cli_int("--to-layer", v, 1, 1 << 20, &job.layer_to);
        } else if ((r = OPT("--init"))) {
            rc = r < 0 || (ecc_nmf_parse_init(v, &job.nmf.init) != ECC_OK && cli_lib_error());
        } else if ((r = OPT("--solver"))) {
            rc = r < 0 || (ecc_nmf_parse_solver(v, &job.nmf.solver) != ECC_OK && cli_lib_error());
        } else if ((r = OPT("--max-iter"))) {
            rc = r < 0 || cli_int("--max-iter", v, 1, 1000000, &job.nmf.max_iter);
        } else if ((r = OPT("--tol"))) {
            rc = r < 0 || cli_float("--tol", v, 0, 1, &job.nmf.tol);
        } else if ((r = OPT("--seed"))) {
            rc = r < 0 || cli_u64("--seed", v, &job.nmf.seed);
        } else if ((r = OPT("--device"))) {
            rc = r < 0 || cli_device(v, &job.device);
        } else if ((r = OPT("--threads"))) {
            rc = r < 0 || cli_int("--threads", v, 1, 1024, &job.threads);
        } else if ((r = OPT("--out"))) {
            rc = r < 0;
            job.out = v;
        } else if (cli_flag(&a, "--quiet") || cli_flag(&a, "-q")) {
            quiet = 1;
        } else if (argv[a.i][0] == '-') {
            rc = cli_error("nmf: unknown option '%s' (see eccolo nmf --help)", argv[a.i]);
        } else {
            dirs[n++] = argv[a.i];
        }
#undef OPT
    }
    if (rc) {
        free(dirs);
        return ECC_EXIT_ERROR;
    }
    if (n == 0 || job.nmf.k == 0) {
        free(dirs);
        return cli_error(n == 0 ? "nmf: give one or more run directories (see eccolo nmf --help)"
                                : "nmf: --components K is required");
    }
    /* a batch's output directory stands for all its finished runs */
    char **owned = NULL;
    int n_owned = 0;
    if (n == 1 && !ecc_file_exists_in(dirs[0], "run.json") && ecc_file_exists_in(dirs[0], "manifest.jsonl")) {
        char **ids;
        int n_ids;
        if (ecc_batch_done_ids(&ids, &n_ids, dirs[0]) != ECC_OK) {
            free(dirs);
            return cli_lib_error();
        }
        owned = calloc((size_t)n_ids + 1, sizeof(char *));
        char *runs = ecc_path_join(dirs[0], "runs");
        for (int i = 0; owned && runs && i < n_ids; i++) /* ids checked by ecc_batch_done_ids: no "..", no "/" */
            if ((owned[n_owned] = ecc_path_join(runs, ids[i])) != NULL)
                n_owned++;
        int oom = !runs || n_owned < n_ids;
        free(runs);
        for (int i = 0; i < n_ids; i++)
            free(ids[i]);
        free(ids);
        if (oom || !owned) {
            for (int i = 0; owned && i < n_owned; i++)
                free(owned[i]);
            free(owned);
            free(dirs);
            return cli_error("nmf: out of memory");
        }
        if (n_owned == 0) {
            rc = cli_error("nmf: %s is a batch directory without finished runs", dirs[0]);
            free(owned);
            free(dirs);
            return rc;
        }
    }
    job.dirs = owned ? (const char *const *)owned : dirs;
    job.n_dirs = owned ? n_owned : n;
    char *batch_out = NULL;
    if (owned && !job.out) /* DIR/nmf.safetensors for a batch */
        job.out = batch_out = ecc_path_join(dirs[0], "nmf.safetensors");
    ecc_nmf_result res;
    char *path = NULL;
    if (ecc_nmf_runs(&job, &res, &path) != ECC_OK) {
        rc = cli_lib_error();
        goto done;
    }
    if (res.notice[0])
        cli_notice(quiet, "%s", res.notice);
    if (!quiet)
        printf("nmf: %d components over %d run(s): relative error %.4f after %d iterations (%.3f s); wrote %s\n",
               job.nmf.k, job.n_dirs, res.rel_error, res.iterations, res.seconds, path);
    rc = 0;
    ecc_nmf_result_free(&res);
    free(path);
done:
    free(batch_out);
    for (int i = 0; i < n_owned; i++)
        free(owned[i]);
    free(owned);
    free(dirs);
    return rc;
}
