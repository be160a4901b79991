/* The eccolo command line: shared helpers for the subcommands. */
#ifndef ECC_CLI_H
#define ECC_CLI_H

#include <stdint.h>

#include "eccolo.h"

/* Exit code for every error the user can act on (bad input, bad files). */
#define ECC_EXIT_ERROR 2

/* Print "eccolo: error: MSG" on one line to stderr; returns ECC_EXIT_ERROR. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same with ecc_last_error() as the message. */
int cli_lib_error(void);
/* A notice or progress line "eccolo: MSG" on stderr (escaped as errors are),
 * unless quiet: every command's --quiet silences them all. */
void cli_notice(int quiet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Argument parsing: "--name value" or "--name=value". */
typedef struct cli_args {
    int argc, i;
    char **argv;
    const char *cmd; /* subcommand, for messages */
} cli_args;

/* If argv[i] is the option NAME, set *value to its argument (advancing i)
 * and return 1; 0 when it is another option; -1 (error printed) when the
 * value is missing or empty. */
int cli_opt(cli_args *a, const char *name, const char **value);
/* The same for an option whose empty value means something (tokenize --text ""). */
int cli_opt_text(cli_args *a, const char *name, const char **value);
/* A flag without value. */
int cli_flag(cli_args *a, const char *name);
/* Parse numbers with range checks; print the error and return -1 on failure. */
int cli_int(const char *opt, const char *s, long lo, long hi, int *out);
int cli_float(const char *opt, const char *s, double lo, double hi, float *out);
int cli_u64(const char *opt, const char *s, uint64_t *out);
/* "1,2,3" -> malloc'd ids; -1 on error (printed). */
int cli_ids(const char *opt, const char *s, int32_t **ids, int *n);
/* Interpret \n \t \r \\ \" \' \0xx escapes in place-copied text (malloc'd). */
char *cli_unescape(const char *s);
/* "grad_x_input,saliency,ig" -> ECC_ATTR_* bits; -1 on error (printed). */
int cli_methods(const char *s, unsigned *bits);
int cli_target(const char *s, ecc_target *t);
/* "a:b" -> [a, b) */
int cli_layers(const char *s, int *from, int *to);
/* "512M", "8G", "1.5G", "4096" -> bytes (binary units) */
int cli_size(const char *opt, const char *s, size_t *out);
/* A token for the terminal: quoted, newlines and tabs as \n and \t, other
 * control bytes and partial UTF-8 as \xNN (a rotating static buffer: valid
 * for the next three calls). */
const char *cli_quote_token(const char *tok);
/* ecc_device from "auto" | "cpu" | "cuda"; -1 on error (printed). */
int cli_device(const char *s, ecc_device *d);

/* The options generate and batch share (host/cli/cli_options.c). */
typedef struct cli_gen {
    const char *model, *watch, *watch_ids;
    int raw, quiet, greedy_flag, sampling_opt_seen;
    int32_t *watch_buf;
    ecc_options o;
} cli_gen;
extern const char *cli_gen_help;
void cli_gen_init(cli_gen *g);
/* 1 if argv[a->i] was one of the shared options (consumed), 0 if not, -1 on error (printed). */
int cli_gen_option(cli_args *a, cli_gen *g);
/* Consistency of the parsed options; an exit code (0 = fine). */
int cli_gen_check(const cli_gen *g);
/* After the model is open: --watch texts into ids. An exit code. */
int cli_gen_resolve(cli_gen *g, ecc_model *m);
/* Progress on stderr when it is a terminal (and not --quiet). */
void cli_gen_progress(cli_gen *g);
void cli_gen_free(cli_gen *g);

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_nmf(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_compare(int argc, char **argv); /* cli_compare.c */
int cmd_submit(int argc, char **argv);
int cmd_status(int argc, char **argv);

#endif
