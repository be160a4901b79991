/* eccolo compare A [B] --method M: every layer of A against every layer of B. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/compare.h"
#include "cli/cli.h"
#include "util.h"

static const char *k_help =
    "usage: eccolo compare RUN_OR_BATCH_A [RUN_OR_BATCH_B] --method cca|svcca|pwcca|cka [options]\n"
    "\n"
    "How similar the representations of two runs (or batches) are, layer by layer, as Ecco's\n"
    "ecco.analysis computes it: every layer of A against every layer of B (B defaults to A), over\n"
    "the tokens both hold, which must be the same token ids. A batch directory (eccolo batch --out)\n"
    "stands for all its finished runs, their tokens one after another in manifest order.\n"
    "\n"
    "  --method M              cca, svcca, pwcca or cka (linear CKA), as ecco.analysis (required)\n"
    "  --what W                activations (default: the MLP neurons, eccolo generate --activations)\n"
    "                          or hidden_states (--hidden-states; layer 0 = the embeddings)\n"
    "  --layers-a a:b          layers [a, b) of A (default: every layer it holds)\n"
    "  --layers-b a:b          layers [a, b) of B\n"
    "  --dims K                svcca: singular directions kept on each side (default 20, Ecco's)\n"
    "  --out FILE              write {method, layers_a, layers_b, values: [[...]], ...} as JSON\n"
    "  --html FILE             write a heatmap view (one self-contained HTML file)\n"
    "  --device auto|cpu|cuda  --threads N\n"
    "  --quiet                 no table on stdout\n"
    "\n"
    "cca and pwcca need fewer neurons per layer than tokens (as Ecco asserts); svcca and cka do not.\n";

static int parse_method(const char *v, ecc_compare_method *m)
{
    for (int i = ECC_COMPARE_CCA; i <= ECC_COMPARE_CKA; i++)
        if (!strcmp(v, ecc_compare_method_name((ecc_compare_method)i))) {
            *m = (ecc_compare_method)i;
            return 0;
        }
    return cli_error("--method must be cca, svcca, pwcca or cka (got '%s')", v);
}

int cmd_compare(int argc, char **argv)
{
    ecc_compare_job job;
    memset(&job, 0, sizeof job);
    ecc_compare_options_default(&job.opt);
    job.a_from = job.a_to = job.b_from = job.b_to = -1;
    const char *dirs[2] = {NULL, NULL}, *out = NULL, *html = NULL;
    int n = 0, have_method = 0, have_dims = 0, quiet = 0;
    cli_args a = {argc, 1, argv, "compare"};
    int rc = 0;
    for (; a.i < argc && !rc; a.i++) {
        const char *v = NULL;
        int r;
#define OPT(name) ((r = cli_opt(&a, name, &v)) < 0 ? -1 : r)
        if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
            fputs(k_help, stdout);
            return 0;
        } else if (cli_flag(&a, "--quiet")) {
            quiet = 1;
        } else if ((r = OPT("--method"))) {
            rc = r < 0 || parse_method(v, &job.opt.method);
            have_method = 1;
        } else if ((r = OPT("--what"))) {
            rc = r < 0;
            if (!rc && !strcmp(v, "activations"))
                job.what = ECC_COMPARE_ACTIVATIONS;
            else if (!rc && !strcmp(v, "hidden_states"))
                job.what = ECC_COMPARE_HIDDEN_STATES;
            else if (!rc)
                rc = cli_error("--what must be activations or hidden_states (got '%s')", v);
        } else if ((r = OPT("--layers-a"))) {
            rc = r < 0 || cli_layers(v, &job.a_from, &job.a_to);
        } else if ((r = OPT("--layers-b"))) {
            rc = r < 0 || cli_layers(v, &job.b_from, &job.b_to);
        } else if ((r = OPT("--dims"))) {
            rc = r < 0 || cli_int("--dims", v, 1, 1 << 20, &job.opt.dims);
            have_dims = 1;
        } else if ((r = OPT("--out"))) {
            rc = r < 0;
            out = v;
        } else if ((r = OPT("--html"))) {
            rc = r < 0;
            html = v;
        } else if ((r = OPT("--device"))) {
            rc = r < 0 || cli_device(v, &job.opt.device);
        } else if ((r = OPT("--threads"))) {
            rc = r < 0 || cli_int("--threads", v, 1, 1024, &job.opt.threads);
        } else if (argv[a.i][0] == '-') {
            rc = cli_error("compare: unknown option '%s' (see eccolo compare --help)", argv[a.i]);
        } else if (n < 2) {
            dirs[n++] = argv[a.i];
        } else {
            rc = cli_error("compare: give one or two run or batch directories (got a third: '%s')", argv[a.i]);
        }
#undef OPT
    }
    if (rc)
        return ECC_EXIT_ERROR;
    if (n == 0)
        return cli_error("compare: give a run or batch directory, and optionally a second (see eccolo compare --help)");
    if (!have_method)
        return cli_error("compare: --method cca|svcca|pwcca|cka is required");
    if (have_dims && job.opt.method != ECC_COMPARE_SVCCA)
        return cli_error("compare: --dims is for --method svcca");
    job.a = dirs[0];
    job.b = dirs[1];
    ecc_compare_result res;
    if (ecc_compare_dirs(&res, &job) != ECC_OK)
        return cli_lib_error();
    if (res.Ta != res.Tb)
        fprintf(stderr, "eccolo: compared the first %d tokens, which both hold (A holds %d, B %d)\n", res.T, res.Ta,
                res.Tb);
    if (!quiet)
        ecc_compare_print(stdout, &res);
    if (out && ecc_compare_write_json(&res, out) != ECC_OK)
        rc = cli_lib_error();
    if (!rc && html && ecc_compare_write_html(&res, html) != ECC_OK)
        rc = cli_lib_error();
    if (!rc && !quiet && (out || html))
        printf("compare: %d x %d layer pairs in %.3f s; wrote %s%s%s\n", res.La, res.Lb, res.seconds, out ? out : "",
               out && html ? " and " : "", html ? html : "");
    ecc_compare_result_free(&res);
    return rc;
}
