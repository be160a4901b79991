/* Tokenizers of the families eccolo explains, identical in ids and text to
 * Hugging Face's `tokenizers` library running the same tokenizer.json.
 *
 * A tokenizer.json describes a pipeline: added tokens, normalizers (NFC,
 * NFD, NFKC, NFKD, Replace, Prepend), pre-tokenizers (ByteLevel, Split with
 * any regex, Metaspace, Digits), a BPE model (byte-level, or SentencePiece
 * style with byte fallback and an unknown token; ignore_merges), a
 * post-processor template (the BOS/EOS a family adds) and decoders
 * (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace). GPT-2's
 * vocab.json + merges.txt are read too. The code is in host/model/tokenizer/
 * (tok.h describes the pieces). */
#ifndef ECC_TOKENIZER_H
#define ECC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "eccolo.h"

typedef struct ecc_tokenizer ecc_tokenizer;

/* Load from a model directory: tokenizer.json if present (with
 * tokenizer_config.json's add_bos_token / add_eos_token, which override the
 * template as transformers does), else vocab.json + merges.txt. The error
 * names the directory and the files looked for. */
ecc_status ecc_tokenizer_load_dir(ecc_tokenizer **out, const char *dir);
ecc_status ecc_tokenizer_load_json(ecc_tokenizer **out, const char *tokenizer_json_path);
ecc_status ecc_tokenizer_load_bpe(ecc_tokenizer **out, const char *vocab_json_path, const char *merges_txt_path);
void ecc_tokenizer_free(ecc_tokenizer *t);

/* Number of ids (largest id + 1). */
int ecc_tokenizer_n_vocab(const ecc_tokenizer *t);
/* Id of <|endoftext|>, or -1. */
int32_t ecc_tokenizer_eot(const ecc_tokenizer *t);

/* Flags of ecc_tokenizer_encode_flags (the same bits as eccolo.h's ECC_TOKENIZE_*). */
enum {
    ECC_TOK_ADD_SPECIAL = 1,     /* add the template's tokens (BOS/EOS), as HF's encode(text) does */
    ECC_TOK_SPECIAL_AS_TEXT = 2, /* special added tokens in the text are plain text (--no-special) */
};

/* UTF-8 text -> ids (*ids malloc'd, also when *n = 0). Invalid UTF-8 is
 * ECC_ERR_INPUT. ecc_tokenizer_encode is encode_flags with flags 0: added
 * tokens are recognised, nothing is added. */
ecc_status ecc_tokenizer_encode(const ecc_tokenizer *t, const char *text, size_t len, int32_t **ids, int *n);
ecc_status ecc_tokenizer_encode_flags(const ecc_tokenizer *t, const char *text, size_t len, unsigned flags,
                                      int32_t **ids, int *n);

/* The template's tokens added before and after the text (pointers into t);
 * returns their total. Where the template came from ("tokenizer.json
 * post_processor", "tokenizer_config.json add_bos_token/add_eos_token" or
 * "none"). */
int ecc_tokenizer_template(const ecc_tokenizer *t, const int32_t **front, int *n_front, const int32_t **back,
                           int *n_back);
const char *ecc_tokenizer_template_source(const ecc_tokenizer *t);
/* Is id a special added token (skipped by HF's skip_special_tokens)? */
int ecc_tokenizer_is_special(const ecc_tokenizer *t, int32_t id);

/* The bytes a token stands for on its own: its string through the decoders
 * that act on one token (byte map undone, ▁ as a space, <0xNN> as the byte);
 * NULL (and *len = 0) for an id out of range. Not NUL-terminated. */
const uint8_t *ecc_tokenizer_token_bytes(const ecc_tokenizer *t, int32_t id, size_t *len);

/* ids -> UTF-8 text (malloc'd, NUL-terminated), exactly what HF's
 * Tokenizer.decode(ids, skip_special_tokens=False) gives: the decoders run on
 * the token strings (byte-level bytes that are not valid UTF-8 become U+FFFD,
 * one per maximal invalid subsequence; byte-fallback bytes one per byte). An
 * id out of range is ECC_ERR_INPUT. */
ecc_status ecc_tokenizer_decode(const ecc_tokenizer *t, const int32_t *ids, int n, char **text, size_t *len);

/* Per-token display strings and partial flags, for views and run.json.
 * display[i] (malloc'd array of malloc'd strings) is the token's bytes
 * (ecc_tokenizer_token_bytes; invalid UTF-8 -> U+FFFD). partial[i] = 1 when
 * the token continues a word (it starts with a letter or digit and the
 * previous token ends with one) or when its bytes are not a complete UTF-8
 * sequence on their own (part of a multi-byte character split across tokens). */
ecc_status ecc_tokenizer_display(const ecc_tokenizer *t, const int32_t *ids, int n, char ***display,
                                 uint8_t **partial);
void ecc_tokenizer_display_free(char **display, int n);

#endif
