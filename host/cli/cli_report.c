/* eccolo report: write the interactive HTML page of a run directory. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "report/report.h"

static const char *k_help =
    "usage: eccolo report RUN_DIR [--nmf FILE] [--out FILE]\n"
    "\n"
    "Writes one self-contained HTML page (no network needed; open it from disk) with the\n"
    "interactive views of a run written by eccolo generate --out: input saliency, NMF factors,\n"
    "logit-lens rankings and layer predictions, neuron activations and attention, each when\n"
    "the run holds its data.\n"
    "\n"
    "  --nmf FILE    NMF factors written by eccolo nmf (default: RUN_DIR/nmf.safetensors\n"
    "                when it exists)\n"
    "  --out FILE    the page (default: RUN_DIR/report.html)\n"
    "  --quiet       do not print the path written\n"
    "\n"
    "Large runs are embedded selectively and quantised (see the page's 'About' section).\n"
    "Errors are one line on stderr, with exit code 2.\n";

int cmd_report(int argc, char **argv)
{
    cli_args a = {argc, 1, argv, "report"};
    const char *run_dir = NULL, *nmf = NULL, *out = NULL;
    int quiet = 0;
    for (; a.i < argc; a.i++) {
        int r;
        if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
            fputs(k_help, stdout);
            return 0;
        } else if ((r = cli_opt(&a, "--nmf", &nmf))) {
            if (r < 0)
                return ECC_EXIT_ERROR;
        } else if ((r = cli_opt(&a, "--out", &out))) {
            if (r < 0)
                return ECC_EXIT_ERROR;
        } else if (cli_flag(&a, "--quiet") || cli_flag(&a, "-q")) {
            quiet = 1;
        } else if (argv[a.i][0] == '-' && argv[a.i][1]) {
            return cli_error("report: unknown option '%s' (see eccolo report --help)", argv[a.i]);
        } else if (run_dir) {
            return cli_error("report: one run directory only (got '%s' and '%s')", run_dir, argv[a.i]);
        } else {
            run_dir = argv[a.i];
        }
    }
    if (!run_dir)
        return cli_error("report: no run directory given (usage: eccolo report RUN_DIR [--nmf FILE] [--out FILE])");
    size_t bytes = 0;
    if (ecc_report_write_ex(run_dir, nmf, out, &bytes) != ECC_OK)
        return cli_lib_error();
    if (!quiet) {
        if (out)
            fprintf(stderr, "eccolo: wrote %s (%.1f MB)\n", out, (double)bytes / 1e6);
        else
            fprintf(stderr, "eccolo: wrote %s/report.html (%.1f MB)\n", run_dir, (double)bytes / 1e6);
    }
    return 0;
}
