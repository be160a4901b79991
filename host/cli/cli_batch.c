/* eccolo batch: thousands of prompts, several sequences per forward and
 * backward, resumable (see host/jobs/batch.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/batch.h"
#include "cli/cli.h"
#include "util.h"

static const char *k_usage =
    "usage: eccolo batch --prompts FILE.jsonl --out DIR [--batch-size B] [--shard I/N] [options]\n"
    "\n"
    "Each input line is a JSON object: {\"id\": \"name\", \"prompt\": \"...\"} with optional\n"
    "\"continuation\" (forced, to explain a given text) and \"max_new_tokens\". Every prompt is\n"
    "written to DIR/runs/<id>/ (run.json + tensors.safetensors, as eccolo generate --out) and\n"
    "recorded in DIR/manifest.jsonl. Re-running the same command skips what is done; a done\n"
    "id whose prompt, continuation, model or generate options changed since is refused\n"
    "(--redo-changed redoes it). Several processes may share DIR (shards, or the same\n"
    "command twice): each id is computed by one of them.\n"
    "\n"
    "  --prompts FILE          the JSONL file\n"
    "  --out DIR               the output directory\n"
    "  --batch-size B          sequences generated and explained together (default 8)\n"
    "  --shard I/N             take the ids whose hash modulo N is I (default 0/1: all)\n"
    "  --redo-changed          redo the done ids whose prompt, continuation, model or options changed\n"
    "\n";

static int parse_shard(const char *s, int *i, int *n)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '/')
        return cli_error("--shard expects I/N, e.g. 3/8 (got '%s')", s), -1;
    const char *q = end + 1;
    long b = strtol(q, &end, 10);
    if (end == q || *end || b < 1 || b > 100000 || a < 0 || a >= b)
        return cli_error("--shard I/N needs 0 <= I < N (got '%s')", s), -1;
    *i = (int)a;
    *n = (int)b;
    return 0;
}

int cmd_batch(int argc, char **argv)
{
    cli_gen gen;
    cli_gen_init(&gen);
    ecc_batch_job job;
    memset(&job, 0, sizeof job);
    job.batch_size = 8;
    job.n_shards = 1;
    cli_args a = {argc, 1, argv, "batch"};
    for (; a.i < argc; a.i++) {
        const char *v = NULL;
        int r;
        if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
            fputs(k_usage, stdout);
            fputs(cli_gen_help, stdout);
            return 0;
        }
        if ((r = cli_gen_option(&a, &gen)) != 0) {
            if (r < 0)
                return ECC_EXIT_ERROR;
            continue;
        }
        if (cli_flag(&a, "--redo-changed")) {
            job.redo_changed = 1;
        } else if ((r = cli_opt(&a, "--prompts", &v))) {
            if (r < 0)
                return ECC_EXIT_ERROR;
            job.prompts = v;
        } else if ((r = cli_opt(&a, "--out", &v))) {
            if (r < 0)
                return ECC_EXIT_ERROR;
            job.out = v;
        } else if ((r = cli_opt(&a, "--batch-size", &v))) {
            if (r < 0 || cli_int("--batch-size", v, 1, 4096, &job.batch_size))
                return ECC_EXIT_ERROR;
        } else if ((r = cli_opt(&a, "--shard", &v))) {
            if (r < 0 || parse_shard(v, &job.shard, &job.n_shards))
                return ECC_EXIT_ERROR;
        } else {
            return cli_error("batch: unknown option '%s' (see eccolo batch --help)", argv[a.i]);
        }
    }
    if (!job.prompts || !job.out)
        return cli_error("batch needs --prompts FILE.jsonl and --out DIR");
    if (cli_gen_check(&gen))
        return ECC_EXIT_ERROR;
    ecc_model *m = NULL;
    if (ecc_model_open(&m, gen.model) != ECC_OK)
        return cli_lib_error();
    int rc = cli_gen_resolve(&gen, m);
    if (rc) {
        ecc_model_close(m);
        return rc;
    }
    job.opt = gen.o;
    job.quiet = gen.quiet;
    ecc_batch_stats st;
    if (ecc_batch_run(&st, m, &job) != ECC_OK) {
        rc = cli_lib_error();
    } else {
        char extra[160] = "";
        int n = 0;
        if (st.redone)
            n = snprintf(extra, sizeof extra, " (%d redone: changed since)", st.redone);
        if (st.busy)
            snprintf(extra + n, sizeof extra - (size_t)n, ", %d left to another process working there", st.busy);
        if (!gen.quiet)
            fprintf(stderr,
                    "eccolo batch: shard %d/%d: %d prompts: %d done now%s, %d done before, %d failed; %lld tokens "
                    "in %.1f s (%.1f tokens/s); see %s/manifest.jsonl\n",
                    job.shard, job.n_shards, st.total, st.done, extra, st.skipped, st.failed, (long long)st.tokens,
                    st.seconds, st.seconds > 0 ? st.tokens / st.seconds : 0, job.out);
        rc = st.failed ? 1 : 0; /* 1: the batch ran, but some prompts failed (see the manifest) */
    }
    cli_gen_free(&gen);
    ecc_model_close(m);
    return rc;
}
