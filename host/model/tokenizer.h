/* GPT-2 byte-level BPE tokenizer, identical in ids to Hugging Face's
 * GPT2Tokenizer / GPT2TokenizerFast.
 *
 * Loaded from tokenizer.json (preferred, as AutoTokenizer does) or from
 * vocab.json + merges.txt. Pre-tokenisation uses GPT-2's pattern through PCRE2
 * with Unicode properties:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Special (added) tokens such as <|endoftext|> are split out of the text first. */
#ifndef ECC_TOKENIZER_H
#define ECC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "eccolo.h"

typedef struct ecc_tokenizer ecc_tokenizer;

/* Load from a model directory: tokenizer.json if present, else vocab.json +
 * merges.txt. The error names the directory and the files looked for. */
ecc_status ecc_tokenizer_load_dir(ecc_tokenizer **out, const char *dir);
ecc_status ecc_tokenizer_load_json(ecc_tokenizer **out, const char *tokenizer_json_path);
ecc_status ecc_tokenizer_load_bpe(ecc_tokenizer **out, const char *vocab_json_path, const char *merges_txt_path);
void ecc_tokenizer_free(ecc_tokenizer *t);

/* Number of ids (largest id + 1). */
int ecc_tokenizer_n_vocab(const ecc_tokenizer *t);
/* Id of <|endoftext|>, or -1. */
int32_t ecc_tokenizer_eot(const ecc_tokenizer *t);

/* UTF-8 text -> ids (*ids malloc'd). Invalid UTF-8 is ECC_ERR_INPUT. */
ecc_status ecc_tokenizer_encode(const ecc_tokenizer *t, const char *text, size_t len, int32_t **ids, int *n);

/* The raw bytes a token stands for (after undoing the byte-to-unicode map);
 * NULL (and *len = 0) for an id out of range. Not NUL-terminated. */
const uint8_t *ecc_tokenizer_token_bytes(const ecc_tokenizer *t, int32_t id, size_t *len);

/* ids -> UTF-8 text (malloc'd, NUL-terminated). Bytes that do not form valid
 * UTF-8 become U+FFFD, one per maximal invalid subsequence, like Python's
 * bytes.decode("utf-8", errors="replace"), which Hugging Face uses. An id out
 * of range is ECC_ERR_INPUT. */
ecc_status ecc_tokenizer_decode(const ecc_tokenizer *t, const int32_t *ids, int n, char **text, size_t *len);

/* Per-token display strings and partial flags, for views and run.json.
 * display[i] (malloc'd array of malloc'd strings) is the token's text decoded
 * on its own (invalid UTF-8 -> U+FFFD). partial[i] = 1 when the token
 * continues a word (it starts with a letter or digit and the previous token
 * ends with one) or when its bytes are not a complete UTF-8 sequence on their
 * own (part of a multi-byte character split across tokens). */
ecc_status ecc_tokenizer_display(const ecc_tokenizer *t, const int32_t *ids, int n, char ***display,
                                 uint8_t **partial);
void ecc_tokenizer_display_free(char **display, int n);

#endif
