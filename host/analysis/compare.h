/* eccolo compare: every layer of one run (or batch) against every layer of
 * another, over the tokens both hold, by CCA, SVCCA, PWCCA or linear CKA
 * (host/analysis/analysis.h), with a table, a JSON file and an HTML heatmap.
 *
 * A batch directory (eccolo batch --out) stands for all its finished runs,
 * their tokens one after another in the manifest's order. Both sides must
 * hold the same token ids over the tokens compared (the first min(Ta, Tb)). */
#ifndef ECC_COMPARE_H
#define ECC_COMPARE_H

#include <stdio.h>

#include "eccolo.h"

typedef enum ecc_compare_what { ECC_COMPARE_ACTIVATIONS = 0, ECC_COMPARE_HIDDEN_STATES = 1 } ecc_compare_what;

typedef struct ecc_compare_job {
    const char *a, *b;              /* run or batch directories; b NULL: A against itself */
    int a_from, a_to, b_from, b_to; /* layers [from, to); -1: every layer the runs hold */
    ecc_compare_what what;
    ecc_compare_options opt;
} ecc_compare_job;

typedef struct ecc_compare_result {
    ecc_compare_method method;
    ecc_compare_what what;
    int dims;                 /* svcca's */
    int a_from, La, b_from, Lb; /* layers [a_from, a_from + La) of A against [b_from, b_from + Lb) of B */
    int Na, Nb;               /* neurons per layer */
    int T;                    /* tokens compared: min(Ta, Tb) */
    int Ta, Tb;               /* tokens each side holds */
    int runs_a, runs_b;       /* runs on each side */
    double *values;           /* (La, Lb) */
    double seconds;           /* the comparison itself */
    char *a, *b;              /* the directories given (b = a when not given) */
} ecc_compare_result;

ecc_status ecc_compare_dirs(ecc_compare_result *res, const ecc_compare_job *job);
void ecc_compare_result_free(ecc_compare_result *r);

const char *ecc_compare_what_name(ecc_compare_what w); /* "activations", "hidden_states" */

/* {"method", "what", "tokens", "dims" (svcca), "a", "b", "layers_a", "layers_b",
 * "values": [[...]]} (NaN as null); written atomically by ecc_compare_write_json. */
struct cJSON *ecc_compare_json(const ecc_compare_result *r);
ecc_status ecc_compare_write_json(const ecc_compare_result *r, const char *path);
/* A self-contained heatmap page in the report's style (compare_html.c). */
ecc_status ecc_compare_write_html(const ecc_compare_result *r, const char *path);
/* The table: rows = layers of A, columns = layers of B. */
void ecc_compare_print(FILE *f, const ecc_compare_result *r);

#endif
