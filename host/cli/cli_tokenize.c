/* eccolo tokenize: the ids and pieces a model sees for a text, through the
 * same tokenizer code as generate (the model's tokenizer only: no weights are
 * read, and there is no context limit). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/hub.h"
#include "model/tokenizer.h"
#include "util.h"

static const char *k_usage =
    "usage: eccolo tokenize [--model M] (--text TEXT | --text-file FILE) [--json] [--no-special] [--raw]\n"
    "\n"
    "Prints the token ids and pieces of a text, exactly as the model's Hugging Face tokenizer's\n"
    "encode(text) gives them with its default special tokens (the BOS of Llama, Mistral, Gemma),\n"
    "and as eccolo generate tokenizes a --prompt.\n"
    "\n"
    "  --model M          model directory or hub id in the local Hugging Face cache (default: the\n"
    "                     embedded model)\n"
    "  --text TEXT        the text; \\n \\t \\\\ \\\" escapes are interpreted (see --raw)\n"
    "  --text-file FILE   read the text from a file, byte for byte (CRLF and a final newline are kept)\n"
    "  --json             one JSON object: ids, tokens, added positions\n"
    "  --no-special       special tokens written in the text (<s>, <|im_start|>) are plain text\n"
    "  --raw              take --text literally, without escapes\n"
    "\n"
    "Errors are one line on stderr, with exit code 2.\n";

typedef struct tok_args {
    const char *model, *text, *text_file;
    int json, no_special, raw;
} tok_args;

static int parse(tok_args *t, int argc, char **argv)
{
    cli_args a = {argc, 1, argv, "tokenize"};
    for (; a.i < argc; a.i++) {
        const char *v = NULL, **slot = NULL;
        int r;
        if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
            fputs(k_usage, stdout);
            return 1;
        }
        if ((r = cli_opt(&a, "--model", &v)))
            slot = &t->model;
        else if ((r = cli_opt_text(&a, "--text", &v)))
            slot = &t->text;
        else if ((r = cli_opt(&a, "--text-file", &v)))
            slot = &t->text_file;
        else if (cli_flag(&a, "--json"))
            t->json = 1;
        else if (cli_flag(&a, "--no-special"))
            t->no_special = 1;
        else if (cli_flag(&a, "--raw"))
            t->raw = 1;
        else
            return cli_error("tokenize: unknown option '%s' (see eccolo tokenize --help)", argv[a.i]), -1;
        if (r < 0)
            return -1;
        if (slot)
            *slot = v;
    }
    if (!!t->text + !!t->text_file != 1)
        return cli_error(t->text ? "give only one of --text and --text-file"
                                 : "no text: give --text TEXT or --text-file FILE"),
               -1;
    return 0;
}

static ecc_status open_tokenizer(ecc_tokenizer **tok, const char *model)
{
    if (!model || !*model) {
        model = ecc_default_model();
        if (!model)
            return ecc_fail(ECC_ERR_INPUT, "no model given and this build has no default model: pass --model");
    }
    char *dir;
    ECC_TRY(ecc_resolve_model(&dir, model));
    ecc_status s = ecc_tokenizer_load_dir(tok, dir);
    free(dir);
    return s;
}

static void print_plain(const ecc_tokenizer *tok, const int32_t *ids, int n, char **disp, int nf, int nb)
{
    printf("%d tokens%s\n", n, nf + nb ? " (marked +: added by the tokenizer's template)" : "");
    for (int i = 0; i < n; i++) {
        int added = i < nf || i >= n - nb;
        printf("%6d %c %8d  %s%s\n", i, added ? '+' : ' ', (int)ids[i], cli_quote_token(disp[i]),
               ecc_tokenizer_is_special(tok, ids[i]) ? "  (special)" : "");
    }
}

static int print_json(const ecc_tokenizer *tok, const int32_t *ids, int n, char **disp, int nf, int nb)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "n_tokens", n);
    cJSON *a = cJSON_AddArrayToObject(root, "ids"), *t = cJSON_AddArrayToObject(root, "tokens");
    cJSON *added = cJSON_AddArrayToObject(root, "added_positions"), *sp = cJSON_AddArrayToObject(root, "special");
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
        cJSON_AddItemToArray(t, cJSON_CreateString(disp[i]));
        cJSON_AddItemToArray(sp, cJSON_CreateBool(ecc_tokenizer_is_special(tok, ids[i])));
        if (i < nf || i >= n - nb)
            cJSON_AddItemToArray(added, cJSON_CreateNumber(i));
    }
    cJSON_AddStringToObject(root, "added_by", nf + nb ? ecc_tokenizer_template_source(tok) : "none");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s)
        return cli_error("out of memory");
    printf("%s\n", s);
    free(s);
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    tok_args t;
    memset(&t, 0, sizeof t);
    int p = parse(&t, argc, argv);
    if (p)
        return p > 0 ? 0 : ECC_EXIT_ERROR;
    ecc_tokenizer *tok = NULL;
    char *text = NULL, **disp = NULL;
    uint8_t *partial = NULL;
    int32_t *ids = NULL;
    size_t len = 0;
    int n = 0, nf = 0, nb = 0, rc = 0;
    unsigned flags = ECC_TOK_ADD_SPECIAL | (t.no_special ? ECC_TOK_SPECIAL_AS_TEXT : 0);
    if (open_tokenizer(&tok, t.model) != ECC_OK) {
        rc = cli_lib_error();
    } else if (t.text_file && ecc_read_file(t.text_file, (size_t)1 << 30, &text, &len) != ECC_OK) {
        rc = cli_error("--text-file: %s", ecc_last_error());
    } else if (!t.text_file && !(text = t.raw ? ecc_strdup(t.text) : cli_unescape(t.text))) {
        rc = cli_error("out of memory");
    } else if ((len = t.text_file ? len : strlen(text)),
               ecc_tokenizer_encode_flags(tok, text, len, flags, &ids, &n) != ECC_OK) {
        rc = cli_error("%s: %s", t.text_file ? t.text_file : "--text", ecc_last_error());
    } else if (ecc_tokenizer_display(tok, ids, n, &disp, &partial) != ECC_OK) {
        rc = cli_lib_error();
    } else {
        ecc_tokenizer_template(tok, NULL, &nf, NULL, &nb);
        if (t.json)
            rc = print_json(tok, ids, n, disp, nf, nb);
        else
            print_plain(tok, ids, n, disp, nf, nb);
    }
    ecc_tokenizer_display_free(disp, n);
    free(partial), free(ids), free(text);
    ecc_tokenizer_free(tok);
    return rc;
}
