/* Inputs that are wrong but quiet become errors (issue 14): a NUL byte in a
 * prompt file (was cut silently), empty option values (`--model ""` ran the
 * demo model, `--out ""` wrote to the current directory through a heap
 * overflow in ecc_mkdirs), a config.json whose n_layer or sizes disagree with
 * the checkpoint (extra layers were ignored), the same weight twice (one copy
 * was taken silently), and activations with inf or NaN given to NMF ("error
 * 0.0000" and NaN factors). Each must end with exit 2 and one line naming
 * what is wrong. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "nmf/nmf.h"
#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_error(const char *const *args, const char *want1, const char *want2)
{
    free(expect_cli_error(NULL, args, 120, want1, want2));
}

/* ---- NUL bytes and empty values ------------------------------------------------ */

Test(inputs, nul_in_prompt_file)
{
    char *dir = test_tmpdir("inputs-nul"), *p = ecc_path_join(dir, "prompt.txt"), *m = fixture_path("tiny-gpt2");
    write_file(p, "Hello\0world", 11);
    expect_error(ARGS("generate", "--model", m, "--prompt-file", p, "--device", "cpu"), "NUL", "byte 5");
    free(m), free(p), free(dir);
}

Test(inputs, empty_model)
{
    expect_error(ARGS("generate", "--model", "", "--prompt", "Hi"), "--model is empty", NULL);
    expect_error(ARGS("generate", "--model=", "--prompt", "Hi"), "--model is empty", NULL);
    expect_error(ARGS("batch", "--model", "", "--prompts", "p.jsonl", "--out", "b"), "--model is empty", NULL);
}

Test(inputs, empty_out)
{
    char *m = fixture_path("tiny-gpt2"), *dir = test_tmpdir("inputs-out"), *p = ecc_path_join(dir, "p.jsonl");
    write_file(p, "{\"id\": \"a\", \"prompt\": \"Hi\"}\n", 28);
    expect_error(ARGS("generate", "--model", m, "--prompt", "Hi", "--out", ""), "--out is empty", NULL);
    expect_error(ARGS("batch", "--model", m, "--prompts", p, "--out", ""), "--out is empty", NULL);
    expect_error(ARGS("nmf", dir, "--components", "2", "--out", ""), "--out is empty", NULL);
    expect_error(ARGS("report", dir, "--out", ""), "--out is empty", NULL);
    expect_error(ARGS("submit", "--shards", "2", "--dry-run", "--", "--prompts", p, "--out", ""), "--out is empty",
                 NULL);
    free(p), free(dir), free(m);
}

/* The directory maker read past the end of "" (an ASan heap overflow). */
Test(inputs, mkdirs_empty_path)
{
    cr_assert_eq(ecc_mkdirs(""), ECC_ERR_INPUT);
    cr_assert(strstr(ecc_last_error(), "empty"), "%s", ecc_last_error());
}

/* ---- config.json against the checkpoint ---------------------------------------------- */

static void set_config_int(const char *model, const char *key, int value)
{
    config_set(model, key, cJSON_CreateNumber(value));
}

/* The checkpoint has layers 0 and 1; config.json says one layer. */
Test(inputs, checkpoint_has_more_layers_than_config)
{
    char *m = fixture_copy("tiny-gpt2", "inputs-layers");
    set_config_int(m, "n_layer", 1);
    expect_error(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"), "h.1.", "n_layer 1");
    free(m);
}

Test(inputs, config_has_more_layers_than_checkpoint)
{
    char *m = fixture_copy("tiny-gpt2", "inputs-layers3");
    set_config_int(m, "n_layer", 3);
    expect_error(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"), "h.2.", "n_layer 3");
    free(m);
}

Test(inputs, config_sizes_disagree_with_tensors)
{
    char *m = fixture_copy("tiny-gpt2", "inputs-vocab");
    set_config_int(m, "vocab_size", 1030);
    expect_error(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"), "wte.weight", "vocab_size 1030");
    free(m);
    m = fixture_copy("tiny-gpt2", "inputs-inner");
    set_config_int(m, "n_inner", 128);
    expect_error(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"), "c_fc", "n_inner 128");
    free(m);
    m = fixture_copy("tiny-gpt2", "inputs-pos");
    set_config_int(m, "n_positions", 64);
    expect_error(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"), "wpe.weight", "n_positions 64");
    free(m);
}

/* Rewrite the safetensors file PATH with every tensor it has, plus a copy of
 * tensor FROM (taken from file SRC, or PATH when NULL) under the name AS. */
static void add_copy(const char *path, const char *src, const char *from, const char *as)
{
    ecc_st_file *f, *g = NULL;
    cr_assert_eq(ecc_st_open(&f, path), ECC_OK, "%s", ecc_last_error());
    if (src)
        cr_assert_eq(ecc_st_open(&g, src), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    for (int i = 0; i < f->n; i++) {
        const ecc_st_tensor *t = &f->tensors[i];
        cr_assert_eq(ecc_st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data), ECC_OK);
    }
    const ecc_st_tensor *t = ecc_st_find(g ? g : f, from);
    cr_assert(t, "no tensor %s", from);
    cr_assert_eq(ecc_st_writer_add(&w, as, t->dtype, t->ndim, t->shape, t->data), ECC_OK);
    cr_assert_eq(ecc_st_writer_write(&w, path), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer_free(&w);
    ecc_st_close(f);
    ecc_st_close(g);
}

/* tiny-gpt2 stores transformer.wte.weight; the copy also holds wte.weight. */
Test(inputs, same_weight_under_two_names)
{
    char *m = fixture_copy("tiny-gpt2", "inputs-dup"), *p = ecc_path_join(m, "model.safetensors");
    add_copy(p, NULL, "transformer.wte.weight", "wte.weight");
    expect_error(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"), "'transformer.wte.weight'",
                 "'wte.weight'");
    free(p), free(m);
}

/* A tensor of shard 1 also in shard 2, under the same name. */
Test(inputs, same_weight_in_two_shards)
{
    char *m = fixture_copy("tiny-gpt2-sharded", "inputs-dup-shard");
    char *s1 = ecc_path_join(m, "model-00001-of-00002.safetensors"), *s2 = ecc_path_join(m, "model-00002-of-00002.safetensors");
    add_copy(s2, s1, "transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.weight");
    expect_error(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"), "h.0.ln_1.weight",
                 "model-00002-of-00002.safetensors");
    free(s2), free(s1), free(m);
}

/* ---- NMF of activations with inf or NaN ----------------------------------------------- */

/* A model whose first MLP bias holds inf: layer 0's activation of neuron 0 is
 * inf and what follows NaN; generation still ends (the ids are in range),
 * and NMF of the run must refuse it, naming the run and the tensor. */
Test(inputs, nmf_of_nonfinite_activations)
{
    char *m = fixture_copy("tiny-gpt2", "inputs-inf"), *p = ecc_path_join(m, "model.safetensors");
    char *tmp = ecc_path_join(m, "model.tmp.safetensors");
    ecc_st_file *f;
    cr_assert_eq(ecc_st_open(&f, p), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    float *bias = NULL;
    for (int i = 0; i < f->n; i++) {
        const ecc_st_tensor *t = &f->tensors[i];
        const void *data = t->data;
        if (!strcmp(t->name, "transformer.h.0.mlp.c_fc.bias")) {
            cr_assert_eq(t->dtype, ECC_F32);
            bias = malloc(t->nbytes);
            memcpy(bias, t->data, t->nbytes);
            bias[0] = INFINITY;
            data = bias;
        }
        cr_assert_eq(ecc_st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, data), ECC_OK);
    }
    cr_assert(bias, "the fixture has no transformer.h.0.mlp.c_fc.bias");
    cr_assert_eq(ecc_st_writer_write(&w, tmp), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer_free(&w);
    ecc_st_close(f);
    free(bias);
    cr_assert_eq(rename(tmp, p), 0);

    char *dir = test_tmpdir("inputs-inf-run"), *run = ecc_path_join(dir, "run"), *out, *err;
    int rc = run_cli(&out, &err, ARGS("generate", "--model", m, "--prompt", "Hello world", "--max-new-tokens", "3",
                                      "--activations", "--device", "cpu", "--quiet", "--out", run));
    cr_assert_eq(rc, 0, "generate: %s", err);
    free(out), free(err);
    expect_error(ARGS("nmf", run, "--components", "2", "--device", "cpu"), "'activations'", run);
    /* generate --nmf: the text is printed (stdout), then the NMF is refused */
    rc = run_cli(&out, &err, ARGS("generate", "--model", m, "--prompt", "Hello world", "--max-new-tokens", "3",
                                  "--activations", "--device", "cpu", "--quiet", "--nmf", "2", "--out", run));
    cr_assert(rc == 2 && strstr(err, "'activations'") && strstr(err, "inf"), "exit %d:\n%s", rc, err);
    free(out), free(err);
    free(run), free(dir), free(tmp), free(p), free(m);
}

/* The library call itself: inf, NaN or a negative value is refused, with its place. */
Test(inputs, nmf_library_refuses_nonfinite)
{
    ecc_backend *be;
    cr_assert_eq(ecc_backend_cpu_create(&be, 1), ECC_OK);
    enum { T = 6, F = 5 };
    const float bad[] = {INFINITY, NAN, -1.0f};
    for (int b = 0; b < 3; b++) {
        float X[T * F];
        for (int i = 0; i < T * F; i++)
            X[i] = 0.25f + (float)(i % 7);
        X[3 * F + 2] = bad[b];
        ecc_nmf_options o;
        ecc_nmf_options_default(&o);
        o.k = 2;
        ecc_nmf_result res;
        cr_assert_eq(ecc_nmf(&res, be, X, T, F, &o), ECC_ERR_INPUT, "value %g was accepted", (double)bad[b]);
        cr_assert(strstr(ecc_last_error(), "row 3, column 2"), "%s", ecc_last_error());
    }
    be->destroy(be);
}
