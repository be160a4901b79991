/* eccolo batch: results equal single runs whatever the batch size; bad lines
 * are recorded and the rest go on; shards partition the ids; a killed batch
 * resumes and writes every id exactly once. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobs/batch.h"
#include "model/model.h"
#include "engine/run.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static const char *k_prompts =
    "{\"id\": \"p1\", \"prompt\": \"Hello world\"}\n"
    "{\"id\": \"p2\", \"prompt\": \"Frameworks for Machine Learning include: 1. TensorFlow\", \"max_new_tokens\": 5}\n"
    "{\"id\": \"p3\", \"prompt\": \"The quick brown fox\", \"continuation\": \" jumps over the lazy dog\"}\n"
    "{\"id\": \"p4\", \"prompt\": \"a\"}\n"
    "{\"id\": \"p5\", \"prompt\": \"Numbers: 1 2 3 4 5 6 7 8 9 10 11 12\", \"max_new_tokens\": 3}\n"
    "{\"id\": \"p6\", \"prompt\": \"def f(x):\\n    return x\"}\n";

static char *write_prompts(const char *dir, const char *text)
{
    char *p = ecc_path_join(dir, "prompts.jsonl");
    write_file(p, text, strlen(text));
    return p;
}

static int run_batch(const char *prompts, const char *out, const char *batch_size, char **err)
{
    char *m = fixture_path("tiny-gpt2");
    int rc = run_cli(NULL, err,
                     ARGS("batch", "--model", m, "--prompts", prompts, "--out", out, "--batch-size", batch_size,
                          "--max-new-tokens", "7", "--attribution", "grad_x_input,gradient", "--activations",
                          "--rankings", "--quiet"));
    free(m);
    return rc;
}

static const ecc_st_tensor *tensor(ecc_st_file *f, const char *name)
{
    const ecc_st_tensor *t = ecc_st_find(f, name);
    cr_assert(t, "%s: no tensor %s", f->path, name);
    return t;
}

/* Every run of a batch directory equals ecc_generate on the same request. */
static void check_equals_single_runs(const char *out)
{
    char *m_dir = fixture_path("tiny-gpt2");
    ecc_model *m;
    cr_assert_eq(ecc_model_open(&m, m_dir), ECC_OK);
    ecc_batch_items items;
    char *pp = ecc_path_join(out, "../prompts.jsonl");
    cr_assert_eq(ecc_batch_read(&items, pp), ECC_OK, "%s", ecc_last_error());
    for (int i = 0; i < items.n; i++) {
        const ecc_batch_item *it = &items.items[i];
        int32_t *ids, *cont = NULL;
        int n, nc = 0;
        cr_assert_eq(ecc_tokenize(m, it->prompt, strlen(it->prompt), &ids, &n), ECC_OK);
        if (it->continuation)
            cr_assert_eq(ecc_tokenize(m, it->continuation, strlen(it->continuation), &cont, &nc), ECC_OK);
        ecc_options o;
        ecc_options_default(&o);
        o.device = ECC_DEVICE_CPU;
        o.max_new_tokens = it->max_new_tokens >= 0 ? it->max_new_tokens : 7;
        o.continuation_ids = cont;
        o.n_continuation = nc;
        o.attribution = ECC_ATTR_GRAD_X_INPUT | ECC_ATTR_GRADIENT;
        o.activations = o.rankings = 1;
        ecc_run *r;
        cr_assert_eq(ecc_generate(&r, m, ids, n, &o), ECC_OK, "%s", ecc_last_error());
        char rel[256];
        snprintf(rel, sizeof rel, "%s/runs/%s/tensors.safetensors", out, it->id);
        ecc_st_file *f;
        cr_assert_eq(ecc_st_open(&f, rel), ECC_OK, "%s", ecc_last_error());
        const ecc_st_tensor *t = tensor(f, "token_ids");
        cr_assert_eq(t->shape[0], r->T, "%s: %lld tokens in the batch, %d alone", it->id, (long long)t->shape[0], r->T);
        cr_assert_eq(memcmp(t->data, r->ids, sizeof(int32_t) * (size_t)r->T), 0, "%s: other tokens", it->id);
        static const char *names[] = {"attribution.grad_x_input", "attribution.gradient", "activations"};
        for (int k = 0; k < 3; k++) {
            const ecc_st_tensor *bt = tensor(f, names[k]);
            const ecc_run_tensor *st = ecc_run_tensor_get(r, names[k]);
            cr_assert(st && (size_t)bt->numel * 4 == bt->nbytes);
            float *b = malloc(bt->nbytes);
            memcpy(b, bt->data, bt->nbytes);
            /* the same sums, blocked differently by BLAS in a batch: 1e-5 */
            double e = rel_err_f(b, st->data, bt->numel);
            cr_assert(e <= 1e-5, "%s: %s differs from a single run by %.3g", it->id, names[k], e);
            free(b);
        }
        const ecc_st_tensor *rk = tensor(f, "rankings");
        cr_assert_eq(memcmp(rk->data, ecc_run_tensor_get(r, "rankings")->data, rk->nbytes), 0, "%s: rankings", it->id);
        ecc_st_close(f);
        ecc_run_free(r);
        free(ids);
        free(cont);
    }
    ecc_batch_items_free(&items);
    ecc_model_close(m);
    free(pp);
    free(m_dir);
}

Test(batch, results_equal_single_runs_for_every_batch_size, .timeout = 120)
{
    static const char *sizes[] = {"1", "4", "16"};
    for (int s = 0; s < 3; s++) {
        char *dir = test_tmpdir("batch"), *prompts = write_prompts(dir, k_prompts), *out = ecc_path_join(dir, "out"),
             *err;
        cr_assert_eq(run_batch(prompts, out, sizes[s], &err), 0, "batch size %s: %s", sizes[s], err);
        check_equals_single_runs(out);
        char **ids;
        int n;
        cr_assert_eq(ecc_batch_done_ids(&ids, &n, out), ECC_OK);
        cr_assert_eq(n, 6, "%d runs done", n);
        for (int i = 0; i < n; i++)
            free(ids[i]);
        free(ids), free(err), free(dir), free(prompts), free(out);
    }
}

static int count_lines_with(const char *path, const char *needle)
{
    char *data;
    size_t len;
    if (ecc_read_file(path, 1 << 26, &data, &len) != ECC_OK)
        return 0;
    int n = 0;
    for (char *p = data; (p = strstr(p, needle)); p++)
        n++;
    free(data);
    return n;
}

Test(batch, bad_lines_are_recorded_and_the_rest_goes_on)
{
    char *dir = test_tmpdir("batchbad"), *out = ecc_path_join(dir, "out"), *err;
    char *prompts = write_prompts(dir, "{\"id\": \"ok1\", \"prompt\": \"Hello\"}\n"
                                       "this is not json\n"
                                       "{\"id\": \"ok1\", \"prompt\": \"again\"}\n"
                                       "{\"prompt\": \"no id\"}\n"
                                       "{\"id\": \"../escape\", \"prompt\": \"x\"}\n"
                                       "{\"id\": \"long\", \"prompt\": \"a a a a a a a a a a a a a a a a a a a a a a a a "
                                       "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a "
                                       "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a "
                                       "a a a a a a a a a a a a a a a a a a a a\"}\n"
                                       "{\"id\": \"ok2\", \"prompt\": \"World\"}\n");
    int rc = run_batch(prompts, out, "4", &err);
    cr_assert_eq(rc, 1, "exit code %d (1 = some prompts failed): %s", rc, err);
    char *man = ecc_path_join(out, "manifest.jsonl");
    cr_assert_eq(count_lines_with(man, "\"status\":\"done\""), 2);
    cr_assert_eq(count_lines_with(man, "\"status\":\"failed\""), 5);
    cr_assert_eq(count_lines_with(man, "not a JSON object"), 1);
    cr_assert_eq(count_lines_with(man, "duplicate id (first on line 1)"), 1);
    cr_assert_eq(count_lines_with(man, "no \\\"id\\\" string"), 1);
    cr_assert_eq(count_lines_with(man, "cannot name a directory"), 1);
    cr_assert_eq(count_lines_with(man, "n_positions"), 1, "the prompt too long for the context");
    char *escaped = ecc_path_join(dir, "escape");
    cr_assert(!ecc_dir_exists(escaped), "an id escaped the runs directory");
    free(escaped), free(man), free(err), free(dir), free(out), free(prompts);
}

Test(batch, shards_partition_the_ids)
{
    char *dir = test_tmpdir("batchshard"), *prompts = write_prompts(dir, k_prompts), *out = ecc_path_join(dir, "out");
    char *m = fixture_path("tiny-gpt2");
    for (int i = 0; i < 3; i++) {
        char shard[16], *err;
        snprintf(shard, sizeof shard, "%d/3", i);
        int rc = run_cli(NULL, &err, ARGS("batch", "--model", m, "--prompts", prompts, "--out", out, "--shard", shard,
                                          "--max-new-tokens", "3", "--quiet"));
        cr_assert_eq(rc, 0, "%s", err);
        free(err);
    }
    char **ids;
    int n;
    cr_assert_eq(ecc_batch_done_ids(&ids, &n, out), ECC_OK);
    cr_assert_eq(n, 6, "3 shards wrote %d runs", n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(ids[i], ids[j], "id %s written twice", ids[i]);
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    /* the hash is fixed: a change would move every shard */
    cr_assert_eq(ecc_batch_shard_of("p1", 3), ecc_batch_shard_of("p1", 3));
    int counts[3] = {0};
    for (int i = 0; i < 300; i++) {
        char id[16];
        snprintf(id, sizeof id, "id%d", i);
        counts[ecc_batch_shard_of(id, 3)]++;
    }
    cr_assert(counts[0] > 70 && counts[1] > 70 && counts[2] > 70, "shards of 300 ids: %d %d %d", counts[0], counts[1],
              counts[2]);
    free(m), free(dir), free(prompts), free(out);
}

/* Kill the batch after a few prompts, run it again, count. */
Test(batch, a_killed_batch_resumes_and_writes_every_id_once, .timeout = 180)
{
    char *dir = test_tmpdir("batchkill"), *out = ecc_path_join(dir, "out");
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    for (int i = 0; i < 30; i++)
        len += (size_t)snprintf(text + len, cap - len, "{\"id\": \"k%02d\", \"prompt\": \"Prompt number %d says\"}\n", i,
                                i);
    char *prompts = write_prompts(dir, text), *m = fixture_path("tiny-gpt2"), *man = ecc_path_join(out, "manifest.jsonl");
    const char *bin = getenv("ECCOLO_BIN");
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", 0);
        dup2(null, 2);
        execl(bin, bin, "batch", "--model", m, "--prompts", prompts, "--out", out, "--batch-size", "1",
              "--max-new-tokens", "40", "--attribution", "ig", "--ig-steps", "20", "--threads", "1", "--quiet",
              (char *)NULL);
        _exit(127);
    }
    int done = 0;
    for (int t = 0; t < 6000 && done < 3; t++) {
        usleep(10000);
        done = count_lines_with(man, "\"status\":\"done\"");
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(done >= 3, "the batch wrote %d runs before the deadline", done);
    int before = count_lines_with(man, "\"status\":\"done\"");
    cr_assert(before < 30, "the batch finished before it could be killed");
    char *err;
    int rc = run_cli(NULL, &err, ARGS("batch", "--model", m, "--prompts", prompts, "--out", out, "--batch-size", "4",
                                      "--max-new-tokens", "40", "--attribution", "ig", "--ig-steps", "20", "--quiet"));
    cr_assert_eq(rc, 0, "%s", err);
    char **ids;
    int n;
    cr_assert_eq(ecc_batch_done_ids(&ids, &n, out), ECC_OK);
    cr_assert_eq(n, 30, "after the rerun %d ids are done", n);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(ids[i], ids[j], "id %s recorded twice", ids[i]);
        char rel[64];
        snprintf(rel, sizeof rel, "runs/%s/run.json", ids[i]);
        char *p = ecc_path_join(out, rel);
        cr_assert(ecc_file_exists(p), "%s missing", p);
        free(p);
    }
    for (int i = 0; i < n; i++)
        free(ids[i]);
    /* what the killed process was writing is gone */
    char *runs = ecc_path_join(out, "runs");
    DIR *d = opendir(runs);
    struct dirent *e;
    while (d && (e = readdir(d)))
        cr_assert(strncmp(e->d_name, ".tmp-", 5) != 0, "%s/%s left behind", runs, e->d_name);
    if (d)
        closedir(d);
    free(runs);
    free(ids), free(err), free(m), free(man), free(text), free(dir), free(out), free(prompts);
}

Test(batch, nmf_factorises_a_whole_batch)
{
    char *dir = test_tmpdir("batchnmf"), *prompts = write_prompts(dir, k_prompts), *out = ecc_path_join(dir, "out"),
         *err;
    cr_assert_eq(run_batch(prompts, out, "3", &err), 0, "%s", err);
    free(err);
    int rc = run_cli(NULL, &err, ARGS("nmf", out, "--components", "3"));
    cr_assert_eq(rc, 0, "%s", err);
    char *nmf = ecc_path_join(out, "nmf.safetensors");
    ecc_st_file *f;
    cr_assert_eq(ecc_st_open(&f, nmf), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(tensor(f, "offsets")->shape[0], 7, "six runs and the end");
    ecc_st_close(f);
    free(nmf), free(err), free(dir), free(prompts), free(out);
}
