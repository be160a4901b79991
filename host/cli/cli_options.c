/* The options that `eccolo generate` and `eccolo batch` share: model,
 * generation, explanations and execution, parsed by one function so the two
 * commands cannot drift apart. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/options_parse.h"
#include "util.h"
#include <unistd.h>

const char *cli_gen_help =
    "model:\n"
    "  --model M               Hugging Face model directory, or a hub id in the local cache\n"
    "                          (distilgpt2, openai-community/gpt2); default: the embedded model\n"
    "\n"
    "generation:\n"
    "  --max-new-tokens N      tokens to generate (default 20)\n"
    "  --greedy                arg-max decoding (the default)\n"
    "  --sample                sample instead, with:\n"
    "    --temperature T       (default 1)\n"
    "    --top-k K             keep the K most likely tokens (default 0 = off)\n"
    "    --top-p P             keep the smallest set with probability >= P (default 1 = off)\n"
    "    --seed S              seed of the counter-based RNG (default 0); same seed, same tokens\n"
    "  --no-stop               do not stop at <|endoftext|>\n"
    "\n"
    "explanations (computed over the final sequence, for every generated token):\n"
    "  --attribution LIST      input saliency by grad_x_input, gradient (alias saliency),\n"
    "                          integrated_gradients (alias ig), comma-separated\n"
    "  --target prob|logit|logprob   the scalar explained (default prob, as Ecco 0.1; logit\n"
    "                          reproduces the original Ecco article)\n"
    "  --ig-steps N            integrated-gradients steps (default 50, Gauss-Legendre)\n"
    "  --activations           post-GELU MLP activations [L, T, F]\n"
    "  --layers a:b            capture activations of layers [a, b) only\n"
    "  --hidden-states         hidden states [L+1, T, C] (Hugging Face convention)\n"
    "  --attention             attention probabilities [L, NH, T, T]\n"
    "  --rankings              logit lens: rank of each generated token at every layer, and\n"
    "                          the top tokens per layer\n"
    "  --top-k-layers K        top tokens kept per layer and position (default 10)\n"
    "  --lens standard|raw     standard applies ln_f to every layer (default); raw is Ecco's\n"
    "  --watch-ids IDS         also rank these token ids at every layer and position\n"
    "  --watch LIST            the same from comma-separated single-token texts\n"
    "  --mem-budget SIZE       memory for explanation buffers, e.g. 512M, 8G (default 4G)\n"
    "\n"
    "execution:\n"
    "  --device auto|cpu|cuda  where to run (default auto: the GPU when usable)\n"
    "  --precision fp32|tf32|bf16   GPU matrix products (default fp32; see the README for errors)\n"
    "  --threads N             CPU threads (default: OMP_NUM_THREADS or all cores)\n"
    "  --raw                   take text options literally, without \\n \\t escapes\n"
    "  --quiet                 no progress on stderr\n";

void cli_gen_init(cli_gen *g)
{
    memset(g, 0, sizeof *g);
    ecc_options_default(&g->o);
}

int cli_gen_option(cli_args *a, cli_gen *g)
{
    const char *v = NULL;
    int r;
#define OPT(name) ((r = cli_opt(a, name, &v)) != 0)
#define BAD (r < 0)
    if (OPT("--model")) {
        if (BAD) return -1;
        g->model = v;
    } else if (OPT("--max-new-tokens")) {
        if (BAD || cli_int("--max-new-tokens", v, 0, 1 << 20, &g->o.max_new_tokens)) return -1;
    } else if (OPT("--temperature")) {
        if (BAD || cli_float("--temperature", v, 1e-6, 1e6, &g->o.temperature)) return -1; /* > 0 */
        g->sampling_opt_seen = 1;
    } else if (OPT("--top-k")) {
        if (BAD || cli_int("--top-k", v, 0, 1 << 24, &g->o.top_k)) return -1;
        g->sampling_opt_seen = 1;
    } else if (OPT("--top-p")) {
        if (BAD || cli_float("--top-p", v, 1e-6, 1.0, &g->o.top_p)) return -1;
        g->sampling_opt_seen = 1;
    } else if (OPT("--seed")) {
        if (BAD || cli_u64("--seed", v, &g->o.seed)) return -1;
        g->sampling_opt_seen = 1;
    } else if (OPT("--device")) {
        if (BAD || cli_device(v, &g->o.device)) return -1;
    } else if (OPT("--precision")) {
        if (BAD || ecc_parse_precision(v, &g->o.precision) != ECC_OK) return cli_lib_error(), -1;
    } else if (OPT("--threads")) {
        if (BAD || cli_int("--threads", v, 1, 1024, &g->o.threads)) return -1;
    } else if (OPT("--attribution")) {
        if (BAD || cli_methods(v, &g->o.attribution)) return -1;
    } else if (OPT("--target")) {
        if (BAD || cli_target(v, &g->o.target)) return -1;
    } else if (OPT("--ig-steps")) {
        if (BAD || cli_int("--ig-steps", v, 1, 1000, &g->o.ig_steps)) return -1;
    } else if (OPT("--layers")) {
        if (BAD || cli_layers(v, &g->o.layer_from, &g->o.layer_to)) return -1;
    } else if (OPT("--top-k-layers")) {
        if (BAD || cli_int("--top-k-layers", v, 1, 1 << 24, &g->o.top_k_layers)) return -1;
    } else if (OPT("--lens")) {
        if (BAD || ecc_parse_lens(v, &g->o.lens) != ECC_OK) return cli_lib_error(), -1;
    } else if (OPT("--watch-ids")) {
        if (BAD) return -1;
        g->watch_ids = v;
    } else if (OPT("--watch")) {
        if (BAD) return -1;
        g->watch = v;
    } else if (OPT("--mem-budget")) {
        if (BAD || cli_size("--mem-budget", v, &g->o.mem_budget)) return -1;
    } else if (OPT("--chunk-targets")) { /* for tests: cap targets per backward chunk */
        if (BAD || cli_int("--chunk-targets", v, 1, 1 << 20, &g->o.max_chunk_targets)) return -1;
    } else if (cli_flag(a, "--activations")) {
        g->o.activations = 1;
    } else if (cli_flag(a, "--hidden-states")) {
        g->o.hidden_states = 1;
    } else if (cli_flag(a, "--attention")) {
        g->o.attention = 1;
    } else if (cli_flag(a, "--rankings")) {
        g->o.rankings = 1;
    } else if (cli_flag(a, "--greedy")) {
        g->greedy_flag = 1;
    } else if (cli_flag(a, "--sample")) {
        g->o.sample = 1;
    } else if (cli_flag(a, "--no-stop")) {
        g->o.stop_at_eos = 0;
    } else if (cli_flag(a, "--raw")) {
        g->raw = 1;
    } else if (cli_flag(a, "--quiet") || cli_flag(a, "-q")) {
        g->quiet = 1;
    } else {
        return 0;
    }
#undef OPT
#undef BAD
    return 1;
}

int cli_gen_check(const cli_gen *g)
{
    if (g->greedy_flag && g->o.sample)
        return cli_error("--greedy and --sample contradict each other");
    if (g->sampling_opt_seen && !g->o.sample)
        return cli_error("--temperature, --top-k, --top-p and --seed apply to sampling: add --sample");
    if (g->o.layer_to && !g->o.activations)
        return cli_error("--layers selects the layers of --activations: add --activations");
    if (g->watch && g->watch_ids)
        return cli_error("give only one of --watch and --watch-ids");
    if ((g->watch || g->watch_ids) && !g->o.rankings)
        return cli_error("--watch and --watch-ids rank tokens in the logit lens: add --rankings");
    return 0;
}

/* --watch " is, are": each comma-separated text must be one token. */
static int watch_texts(ecc_model *m, const char *list, int raw, int32_t **ids, int *n)
{
    char *all = raw ? strdup(list) : cli_unescape(list);
    int32_t *out = malloc(sizeof(int32_t) * (strlen(list) + 1));
    if (!all || !out) {
        free(all);
        free(out);
        return cli_error("out of memory");
    }
    int k = 0, rc = 0;
    for (char *save = NULL, *tok = strtok_r(all, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        int32_t *t;
        int nt;
        if (ecc_tokenize(m, tok, strlen(tok), &t, &nt) != ECC_OK) {
            rc = cli_error("--watch: %s", ecc_last_error());
            break;
        }
        if (nt != 1)
            rc = cli_error("--watch: '%s' is %d tokens; watch single tokens (or give ids with --watch-ids)", tok, nt);
        else
            out[k++] = t[0];
        free(t);
    }
    free(all);
    if (rc || k == 0) {
        free(out);
        return rc ? rc : cli_error("--watch: no tokens given");
    }
    *ids = out;
    *n = k;
    return 0;
}

int cli_gen_resolve(cli_gen *g, ecc_model *m)
{
    if (g->watch_ids && cli_ids("--watch-ids", g->watch_ids, &g->watch_buf, &g->o.n_watch))
        return ECC_EXIT_ERROR;
    if (g->watch) {
        int rc = watch_texts(m, g->watch, g->raw, &g->watch_buf, &g->o.n_watch);
        if (rc)
            return rc;
    }
    g->o.watch_ids = g->watch_buf;
    return 0;
}

void cli_gen_free(cli_gen *g)
{
    free(g->watch_buf);
    g->watch_buf = NULL;
}

static void progress(void *user, const char *phase, int done, int total)
{
    fprintf(stderr, "\r\033[Keccolo: %s %d/%d", phase, done, total);
    if (done == total)
        fputc('\n', stderr);
}

void cli_gen_progress(cli_gen *g)
{
    if (!g->quiet && isatty(2)) {
        g->o.progress = progress;
        g->o.progress_user = g;
    }
}
