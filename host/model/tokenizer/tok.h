/* The tokenizer's insides, shared by the files of host/model/tokenizer/.
 *
 * A tokenizer is the pipeline a tokenizer.json describes, run the way Hugging
 * Face's `tokenizers` runs it:
 *
 *   text ─ added.c: split out added tokens that match the raw text (normalized: false)
 *        ─ normalize.c: the normalizers, on each remaining stretch
 *        ─ added.c: split out added tokens that match the normalized text (normalized: true)
 *        ─ pretokenize.c: the pre-tokenizers cut each stretch into pieces
 *        ─ bpe.c: the BPE model turns each piece into ids
 *        ─ encode.c: the post-processor's template adds BOS/EOS
 *   ids ─ decode.c: the decoders turn ids back into text
 *
 * Loading (load.c: vocabulary and merges; load_pipeline.c: the other
 * sections, tokenizer_config.json) fills struct ecc_tokenizer below. */
#ifndef ECC_TOK_H
#define ECC_TOK_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "model/tokenizer.h"

#define TOK_MAX_FILE_BYTES ((size_t)64 << 20) /* vocab.json, merges.txt, tokenizer.json */
#define TOK_MAX_ENTRIES (1 << 22)             /* vocabulary entries, merges */
#define TOK_MAX_ID (1 << 24)                  /* ids lie in [0, TOK_MAX_ID) */
#define TOK_MAX_ADDED (1 << 16)               /* added (special) tokens */
#define TOK_MAX_STAGES 16                     /* normalizers, pre-tokenizers, decoders (after flattening) */
#define TOK_NO_TOKEN UINT32_MAX               /* tok_off of an id no token has */
#define TOK_SHOW 60                           /* bytes of a token shown in messages */

/* ---- hash tables (open addressing, linear probing, capacity >= 2 x entries) ---- */

typedef struct str_entry {
    const char *s; /* NULL: empty slot; points into memory the table's owner keeps */
    size_t len;
    int32_t id;
} str_entry;
typedef struct str_table {
    str_entry *e;
    uint64_t mask;
} str_table;

typedef struct pair_entry {
    uint64_t key; /* left << 32 | right; UINT64_MAX: empty slot */
    uint32_t rank;
    int32_t id; /* the merged token */
} pair_entry;
typedef struct pair_table {
    pair_entry *e;
    uint64_t mask;
} pair_table;

ecc_status str_table_init(str_table *h, uint64_t n);
str_entry *str_slot(const str_table *h, const char *s, size_t len);
int32_t str_get(const str_table *h, const char *s, size_t len); /* the id, or -1 */
int str_put(str_table *h, const char *s, size_t len, int32_t id); /* 0, or 1 when already there */
ecc_status pair_table_init(pair_table *h, uint64_t n);
pair_entry *pair_slot(const pair_table *h, int32_t a, int32_t b);
const pair_entry *pair_get(const pair_table *h, int32_t a, int32_t b);

/* ---- UTF-8 and Unicode (unicode.c) ---- */

/* Length (1-4) of the valid sequence at s[0..n), n >= 1, or minus the length
 * of its maximal invalid subpart (what Python's errors="replace" replaces). */
int utf8_step(const uint8_t *s, size_t n);
size_t utf8_first_invalid(const uint8_t *s, size_t n); /* offset, or n */
/* in[0..n) -> out (room for 3n bytes), invalid subparts as U+FFFD; the length. */
size_t utf8_repair(char *out, const uint8_t *in, size_t n);
/* Decode one character of valid UTF-8 at s (n >= 1 bytes); *k gets its length. */
uint32_t utf8_get(const uint8_t *s, int *k);
/* The same for bytes that may not be valid (token strings from a file): an
 * invalid sequence is one byte standing for U+FFFD. */
uint32_t utf8_get_safe(const uint8_t *s, size_t n, int *k);
int utf8_put(uint8_t *out, uint32_t cp); /* bytes written (1-4) */
int uni_is_numeric(uint32_t cp);         /* Rust's char::is_numeric: Nd, Nl, No */
int uni_is_white_space(uint32_t cp);     /* White_Space (Rust regex's \s) */

enum { UNI_NFC, UNI_NFD, UNI_NFKC, UNI_NFKD };
/* Normalise valid UTF-8 s[0..n) into *out (malloc'd), *out_len bytes. */
ecc_status uni_normalize(uint8_t **out, size_t *out_len, const uint8_t *s, size_t n, int form);

/* ---- growable byte buffer and id list ---- */

typedef struct tok_buf {
    uint8_t *p;
    size_t n, cap;
} tok_buf;
ecc_status buf_reserve(tok_buf *b, size_t extra);
ecc_status buf_add(tok_buf *b, const void *s, size_t n);

typedef struct id_list {
    int32_t *p;
    size_t n, cap;
} id_list;
ecc_status ids_add(id_list *l, int32_t id);

/* ---- regular expressions (Oniguruma's syntax, as tokenizers compiles them, through PCRE2) ---- */

/* Compile a pattern written for Oniguruma (Ruby syntax), the engine
 * `tokenizers` uses: \s \S \w \W \h \H keep Oniguruma's Unicode meanings, ^ $
 * match at line ends and (?m) means dot-all, as in Ruby. what names the
 * pattern in messages. */
ecc_status re_compile(pcre2_code **out, const char *pattern, const char *what);
/* Matches left to right the way Oniguruma's find_iter yields them: an empty
 * match right where the previous match ended is skipped. */
typedef struct re_iter {
    const pcre2_code *re;
    pcre2_match_data *md;
    const uint8_t *s;
    size_t len, at, last_end;
    int have_last;
} re_iter;
/* 1 and the match [*ms, *me), 0 when no more, or -1 (error recorded). */
int re_next(re_iter *it, size_t *ms, size_t *me);

/* ---- the pipeline's stages ---- */

typedef enum norm_kind { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_REPLACE, NORM_PREPEND } norm_kind;
typedef struct tok_norm {
    norm_kind kind;
    char *pattern; /* REPLACE: the literal (re == NULL) */
    size_t pattern_len;
    pcre2_code *re; /* REPLACE with a Regex pattern */
    char *content;  /* REPLACE: the replacement; PREPEND: the prefix */
    size_t content_len;
} tok_norm;

/* How a split keeps what its pattern matched (tokenizers' SplitDelimiterBehavior). */
typedef enum split_behavior { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } split_behavior;
typedef enum pre_kind { PRE_BYTELEVEL, PRE_SPLIT, PRE_METASPACE, PRE_DIGITS } pre_kind;
typedef enum prepend_scheme { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;
typedef struct tok_pre {
    pre_kind kind;
    int add_prefix_space, use_regex;      /* BYTELEVEL */
    pcre2_code *re;                       /* SPLIT (Regex), BYTELEVEL (GPT-2's pattern) */
    char *literal;                        /* SPLIT with a String pattern */
    size_t literal_len;
    split_behavior behavior;              /* SPLIT */
    int invert;                           /* SPLIT */
    char repl[5];                         /* METASPACE: the replacement character, UTF-8 */
    size_t repl_len;
    prepend_scheme scheme;                /* METASPACE */
    int split;                            /* METASPACE */
    int individual_digits;                /* DIGITS */
} tok_pre;

typedef enum dec_kind { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE } dec_kind;
typedef struct tok_dec {
    dec_kind kind;
    char *pattern; /* REPLACE: literal (re == NULL) or regex */
    size_t pattern_len;
    pcre2_code *re;
    char *content; /* REPLACE */
    size_t content_len;
    uint32_t strip_char; /* STRIP */
    int strip_start, strip_stop;
    uint32_t repl;          /* METASPACE */
    prepend_scheme scheme;  /* METASPACE */
} tok_dec;

typedef struct tok_added {
    char *content; /* as written in the file */
    size_t len;
    char *match; /* what is looked for: content, or its normalized form */
    size_t match_len;
    int32_t id;
    uint8_t special, normalized, lstrip, rstrip, single_word;
} tok_added;

/* A trie of added tokens' match strings, for leftmost-longest matching. */
typedef struct trie_node {
    int32_t child, sibling; /* -1: none */
    int32_t added;          /* index into added[], or -1 */
    uint8_t byte;
} trie_node;
typedef struct tok_trie {
    trie_node *node; /* node[0] is the root */
    int n, cap;
    uint8_t first[32]; /* bitmap of first bytes */
} tok_trie;

struct ecc_tokenizer {
    /* vocabulary: every id's token string (as in the file) and its bytes (what it decodes to alone) */
    int n_vocab;                 /* largest id + 1 */
    uint32_t *str_off, *str_len; /* [n_vocab] token strings in str_pool (TOK_NO_TOKEN: no token) */
    char *str_pool;
    uint8_t *key_pool; /* byte_level: the vocabulary's raw bytes (keys of model) */
    uint32_t *tok_off, *tok_len; /* [n_vocab] token bytes in pool */
    uint8_t *pool;
    uint64_t str_used, str_cap, key_used, pool_used;
    int32_t eot; /* <|endoftext|>, or -1 */

    /* the model (BPE) */
    int byte_level;       /* the pieces are byte-mapped (a ByteLevel pre-tokenizer ends the pipeline) */
    int32_t byte_id[256]; /* byte_level: the symbol of each byte */
    uint16_t cp_of_byte[256];
    int16_t byte_of_cp[324]; /* GPT-2's bytes_to_unicode and its inverse */
    str_table model;         /* model-space key -> id: raw bytes (byte_level) or the token string */
    pair_table merges;       /* (left, right) -> (rank, merged id) */
    int32_t fallback_id[256]; /* byte_fallback: <0xNN>, or -1 */
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk; /* model.unk_token's id, or -1 */

    /* the pipeline */
    tok_norm norm[TOK_MAX_STAGES];
    int n_norm;
    tok_pre pre[TOK_MAX_STAGES];
    int n_pre;
    tok_dec dec[TOK_MAX_STAGES];
    int n_dec;
    int has_decoder; /* 0: HF joins tokens with " " */

    /* added tokens */
    tok_added *added;
    int n_added;
    tok_trie raw_trie, norm_trie; /* normalized: false / true */
    int32_t *added_of_id;         /* [n_vocab] index into added[], or -1 */

    /* post-processing: the single-sequence template, ids before and after the text */
    int32_t *tmpl_front, *tmpl_back;
    int n_front, n_back;
    char *tmpl_source; /* "tokenizer.json post_processor" or "tokenizer_config.json add_bos_token ..." */

    pcre2_code *re_alnum; /* one letter or digit (partial flags) */
    pcre2_code *re_word;  /* one \w character (single_word) */
};

/* Byte-level map: 1 and the raw bytes of s in out (room for len), or 0 when
 * a character is not one of GPT-2's 256 byte symbols. */
int tok_unmap(const ecc_tokenizer *t, uint8_t *out, size_t *n_out, const char *s, size_t len);
void tok_init_byte_map(ecc_tokenizer *t);

/* ---- encoding ---- */

typedef struct encoder {
    const ecc_tokenizer *t;
    unsigned flags; /* ECC_TOK_* */
    id_list out;
    pcre2_match_data *md;
    /* one word's BPE state (bpe.c) */
    int32_t *sym, *prev, *next;
    uint32_t *slen; /* bytes of each symbol (0: merged away) */
    struct heap_item *heap;
    size_t cap, heap_n;
    /* split scratch (pretokenize.c): match offsets */
    size_t *cut;
    size_t cut_n, cut_cap;
} encoder;

/* bpe.c: ids of one pre-tokenised piece (byte-mapped when t->byte_level). */
ecc_status bpe_piece(encoder *e, const uint8_t *w, size_t n);
void bpe_free(encoder *e);
/* normalize.c: run the normalizers on s[0..n); *out is s itself (no
 * normalizer changed anything) or a malloc'd buffer the caller frees. */
ecc_status normalize_text(const ecc_tokenizer *t, pcre2_match_data *md, uint8_t **out, size_t *out_len,
                          const uint8_t *s, size_t n);
/* pretokenize.c: pre-tokenise a normalized stretch and BPE its pieces.
 * at_origin: the stretch begins at byte 0 of the user's text. */
ecc_status pretokenize(encoder *e, const uint8_t *s, size_t n, int at_origin);
/* added.c */
ecc_status trie_add(tok_trie *tr, const char *s, size_t len, int32_t added);
void trie_free(tok_trie *tr);
/* Find added tokens of trie tr in s[0..n): calls seg(e, ...) for each stretch
 * of text between them and appends each token's id. */
typedef ecc_status (*segment_fn)(encoder *e, const uint8_t *s, size_t n, int at_origin);
ecc_status split_added(encoder *e, const tok_trie *tr, const uint8_t *s, size_t n, int at_origin, segment_fn seg);
/* load_pipeline.c: parse the sections of tokenizer.json other than model and added_tokens. */
struct cJSON;
ecc_status load_pipeline(ecc_tokenizer *t, const char *path, const struct cJSON *root);
ecc_status load_template(ecc_tokenizer *t, const char *path, const struct cJSON *post);
ecc_status load_tokenizer_config(ecc_tokenizer *t, const char *dir);
ecc_status normalize_added(ecc_tokenizer *t);
void pipeline_free(ecc_tokenizer *t);
/* decode.c: compute every id's bytes (tok_off/tok_len) from its string and the decoders. */
ecc_status tok_compute_bytes(ecc_tokenizer *t);

#endif
