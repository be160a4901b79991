/* Helpers shared by the Criterion tests: fixture paths, JSON fixtures,
 * running the CLI, norm-wise errors. */
#ifndef ECC_TESTUTIL_H
#define ECC_TESTUTIL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* $ECCOLO_FIXTURES/<rel> (malloc'd). */
char *fixture_path(const char *rel);
/* A fresh empty directory under $ECCOLO_TMP (malloc'd). */
char *test_tmpdir(const char *tag);
/* Parse $ECCOLO_FIXTURES/<rel> as JSON (aborts the test on failure). */
cJSON *fixture_json(const char *rel);
/* A tensor of $ECCOLO_FIXTURES/<rel> (a safetensors file), copied into a
 * malloc'd buffer; checks the dtype; shape (up to 4 dims, unused = 1) and the
 * element count are returned when the pointers are non-NULL. */
void *fixture_tensor(const char *rel, const char *name, int dtype, int64_t shape[4], size_t *numel);
/* Read a JSON array of integers into a malloc'd int32 array. */
int32_t *json_int_array(const cJSON *arr, int *n);

/* Run the eccolo CLI with the given arguments (NULL-terminated argv without
 * the program name). Returns the exit code (or 128+signal); stdout and stderr
 * are captured into malloc'd strings when the pointers are non-NULL. */
int run_cli(char **out, char **err, const char *const *args);
/* The same with extra environment variables: env_assignments is a
 * NULL-terminated list of "NAME=VALUE" strings (NULL for none), set in the
 * child only. */
int run_cli_env(char **out, char **err, const char *const *env_assignments, const char *const *args);
/* The same, killing eccolo (SIGKILL: the result is 128 + 9) when it runs past
 * timeout_s seconds (0 = no limit): for inputs that must not hang it. */
int run_cli_timeout(char **out, char **err, const char *const *env_assignments, const char *const *args,
                    double timeout_s);

/* Run the CLI (killed after timeout_s); it must end with exit 2 and exactly
 * one stderr line "eccolo: error: ..." that contains want1 (and want2 when
 * not NULL), nothing on stdout. Returns stderr (malloc'd) for more checks. */
char *expect_cli_error(const char *const *env_assignments, const char *const *args, double timeout_s,
                       const char *want1, const char *want2);
/* A private copy of tests/fixtures/<fixture> to break: <fresh tmp dir>/model (malloc'd). */
char *fixture_copy(const char *fixture, const char *tag);
/* Set KEY of MODEL_DIR/config.json to VALUE (taken over). */
void config_set(const char *model_dir, const char *key, cJSON *value);

/* A CLI error: exit 2 and exactly one line "eccolo: error: ..." that contains
 * needle (aborts the test otherwise). */
void assert_one_line_error(int rc, const char *err, const char *needle);

/* Uniform in [0, 1) from a xorshift64 state (non-zero), 53 bits. */
double test_uniform(uint64_t *state);

/* ||a - b||_2 / ||b||_2 over n values (double accumulation). */
double rel_err(const float *a, const double *b, size_t n);
double rel_err_f(const float *a, const float *b, size_t n);

/* A malloc'd string printed from a format (aborts the test on failure). */
char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
/* The whole file, NUL-terminated, malloc'd (aborts the test on failure);
 * slurp_json parses it as JSON. */
char *slurp(const char *path);
cJSON *slurp_json(const char *path);

/* Write a file (aborts the test on failure). */
void write_file(const char *path, const void *data, size_t len);
/* Copy every regular file of directory src into dst (created). */
void copy_dir(const char *src, const char *dst);

#endif
