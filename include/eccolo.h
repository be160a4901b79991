/* eccolo — explain transformer language models the way Ecco does, in C and CUDA.
 *
 * The public C API. Handles are opaque; every call that can fail returns an
 * ecc_status and leaves a one-line, human-readable message in ecc_last_error()
 * (per thread). Sizes follow one naming everywhere:
 *   T  tokens in a sequence      C  model width (n_embd)     L  layers
 *   NH attention heads           F  MLP width (d_ff)         V  vocabulary size
 *   G  targets (generated tokens explained), G = T - n_input
 */
#ifndef ECCOLO_H
#define ECCOLO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ECCOLO_VERSION "0.1.0"

typedef enum ecc_status {
    ECC_OK = 0,
    ECC_ERR_INPUT = 1,       /* bad user input: arguments, prompt, options          */
    ECC_ERR_FORMAT = 2,      /* a file is malformed, truncated or inconsistent      */
    ECC_ERR_IO = 3,          /* a file could not be opened, read or written         */
    ECC_ERR_NOMEM = 4,       /* an allocation failed or would exceed a stated limit */
    ECC_ERR_UNSUPPORTED = 5, /* valid, but not something eccolo does (yet)          */
    ECC_ERR_DEVICE = 6,      /* the requested device is missing or failed           */
} ecc_status;

/* The message of the last failed call on this thread ("" when none). */
const char *ecc_last_error(void);
/* The library's version ("0.1.0"), and a one-line description of the build
 * (build type, whether the CUDA backend and for which architectures). */
const char *ecc_version(void);
const char *ecc_build_info(void);

/* ---- models ------------------------------------------------------------ */

typedef struct ecc_model ecc_model;

typedef struct ecc_config {
    char model_type[32];  /* "gpt2" */
    int n_layer;          /* L */
    int n_head;           /* NH */
    int n_embd;           /* C */
    int n_inner;          /* F (4*C when config.json says null) */
    int n_positions;      /* maximum context */
    int vocab_size;       /* V: rows of the embedding and of the output matrix */
    int n_tokens;         /* ids the tokenizer knows (<= V); ids n_tokens .. V-1 are padding rows (Pythia pads
                           * 50277 to 50304): never generated, sampled or ranked */
    float layer_norm_eps;
    char activation[24];  /* "gelu_new" (tanh approximation) */
    int eos_token_id;     /* -1 when unknown */
    int tied_lm_head;     /* 1 when the output matrix is wte */
    int scale_attn_by_inverse_layer_idx; /* GPT-2 option: scores also / (layer + 1) */
} ecc_config;

/* Open a model: a directory in Hugging Face layout (config.json, *.safetensors,
 * tokenizer.json or vocab.json + merges.txt), or a hub id ("distilgpt2",
 * "openai-community/gpt2") found in the local Hugging Face cache. Never
 * touches the network. NULL or "" means the embedded default model. */
ecc_status ecc_model_open(ecc_model **out, const char *path_or_id);
void ecc_model_close(ecc_model *m);
const ecc_config *ecc_model_config(const ecc_model *m);
/* The directory the model was read from, and the id the user gave. */
const char *ecc_model_dir(const ecc_model *m);
const char *ecc_model_id(const ecc_model *m);
/* The directory of the embedded default model, or NULL when none is built in. */
const char *ecc_default_model(void);

/* ---- tokenizer --------------------------------------------------------- */

/* Encode UTF-8 text into token ids (*ids is malloc'd; free() it). Invalid
 * UTF-8 is an error. Special tokens such as <|endoftext|> are recognised. */
ecc_status ecc_tokenize(const ecc_model *m, const char *text, size_t len, int32_t **ids, int *n);
/* Decode ids into UTF-8 text (malloc'd, NUL-terminated): what Hugging Face's
 * tokenizers gives for decode(ids, skip_special_tokens=False), through the
 * decoders of the model's tokenizer.json. Byte sequences that are not valid
 * UTF-8 become U+FFFD, as Hugging Face does. */
ecc_status ecc_detokenize(const ecc_model *m, const int32_t *ids, int n, char **text);

/* Flags of ecc_tokenize_ex. */
#define ECC_TOKENIZE_ADD_SPECIAL 1u     /* add the tokens the model's template adds around a text (the BOS of
                                           Llama, Mistral, Gemma), as Hugging Face's encode(text) does */
#define ECC_TOKENIZE_SPECIAL_AS_TEXT 2u /* special tokens written in the text (<s>, <|im_start|>) are plain text */
/* ecc_tokenize with flags; ecc_tokenize(m, ...) is ecc_tokenize_ex(m, ..., 0, ...). With
 * ECC_TOKENIZE_ADD_SPECIAL, the first *n_front and the last *n_back ids (either pointer may be NULL)
 * are the template's. */
ecc_status ecc_tokenize_ex(const ecc_model *m, const char *text, size_t len, unsigned flags, int32_t **ids, int *n,
                           int *n_front, int *n_back);
/* The ids that end generation (config.json's eos_token_id, a number or a list, and
 * generation_config.json's); returns their number, *ids points into the model. */
int ecc_model_eos_ids(const ecc_model *m, const int32_t **ids);

/* ---- generation and explanation --------------------------------------- */

typedef enum ecc_device { ECC_DEVICE_AUTO = 0, ECC_DEVICE_CPU = 1, ECC_DEVICE_CUDA = 2 } ecc_device;
/* Matrix-product precision on the GPU: fp32 (default, agrees with the CPU),
 * or tensor-core tf32 / bf16 inputs with fp32 accumulation. The CPU always
 * computes in fp32. */
typedef enum ecc_precision { ECC_PRECISION_FP32 = 0, ECC_PRECISION_TF32 = 1, ECC_PRECISION_BF16 = 2 } ecc_precision;

/* Attribution methods (bits) and the scalar they explain (see docs and
 * Ecco): for the token x_t at position t, from the logits at t - 1,
 *   prob = softmax[x_t] (Ecco >= 0.1), logit = logits[x_t] (Ecco 0.0.x),
 *   logprob = log_softmax[x_t]. */
enum {
    ECC_ATTR_GRAD_X_INPUT = 1,        /* ||g (.) e||, the default */
    ECC_ATTR_GRADIENT = 2,            /* ||g|| ("saliency") */
    ECC_ATTR_INTEGRATED_GRADIENTS = 4 /* e (.) sum_k w_k g(alpha_k e), Gauss-Legendre */
};
typedef enum ecc_target { ECC_TARGET_PROB = 0, ECC_TARGET_LOGIT = 1, ECC_TARGET_LOGPROB = 2 } ecc_target;
/* Logit lens: standard applies the final layer norm to every layer's hidden
 * state; raw (Ecco's) applies it only where the model does (the last layer). */
typedef enum ecc_lens { ECC_LENS_STANDARD = 0, ECC_LENS_RAW = 1 } ecc_lens;

typedef struct ecc_options {
    int max_new_tokens;       /* default 20 */
    int sample;               /* 0 = greedy (default), 1 = sample */
    float temperature;        /* default 1 */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    uint64_t seed;            /* default 0 */
    int stop_at_eos;          /* default 1: stop after generating <|endoftext|> */
    const int32_t *continuation_ids; /* forced continuation (teacher forcing), or NULL */
    int n_continuation;
    ecc_device device;        /* default AUTO */
    ecc_precision precision;  /* default FP32 */

    /* explanations, computed after generation over the final sequence */
    unsigned attribution;     /* ECC_ATTR_* bits; 0 = none */
    ecc_target target;        /* default PROB */
    int ig_steps;             /* integrated-gradients steps, default 50 */
    int activations;          /* capture post-GELU MLP activations [L', T, F] */
    int layer_from, layer_to; /* activations of layers [from, to); to = 0 means all */
    int hidden_states;        /* capture [L + 1, T, C] */
    int attention;            /* capture [L, NH, T, T] */
    int rankings;             /* logit lens: rankings [L, G], top ids/probs [L, G, k] */
    int top_k_layers;         /* k, default 10 */
    ecc_lens lens;            /* default STANDARD */
    const int32_t *watch_ids; /* extra ids ranked at every layer and position, or NULL */
    int n_watch;
    size_t mem_budget;        /* bytes for explanation buffers; 0 = default (4 GiB) */
    int max_chunk_targets;    /* 0 = as many as fit the budget (tests set 1) */
    int threads;              /* 0 = library default */
    /* Called as phases advance (phase name, done, total); may be NULL. */
    void (*progress)(void *user, const char *phase, int done, int total);
    void *progress_user;
} ecc_options;

void ecc_options_default(ecc_options *o);

typedef struct ecc_run ecc_run;

/* Generate (or force) a continuation of prompt_ids and compute what the
 * options ask for. The result holds every tensor written by ecc_run_write. */
ecc_status ecc_generate(ecc_run **out, ecc_model *m, const int32_t *prompt_ids, int n_prompt,
                        const ecc_options *o);
void ecc_run_free(ecc_run *r);

/* Several prompts at once: they share every matrix product of generation
 * (packed rows) and the target chunks of the backward pass, and give the same
 * results as one call each. A request is a prompt with its own forced
 * continuation (or NULL) and max_new_tokens (< 0: the options'). runs[i] is
 * NULL when request i is not valid; errors (if not NULL) then gets its
 * message (malloc'd). The return value is for failures of the whole batch. */
typedef struct ecc_request {
    const int32_t *prompt;
    int n_prompt;
    const int32_t *continuation;
    int n_continuation;
    int max_new_tokens;
} ecc_request;
ecc_status ecc_generate_batch(ecc_run **runs, char **errors, ecc_model *m, const ecc_request *req, int n,
                              const ecc_options *o);

int ecc_run_n_tokens(const ecc_run *r);           /* T */
int ecc_run_n_input(const ecc_run *r);            /* tokens of the prompt */
const int32_t *ecc_run_token_ids(const ecc_run *r);          /* [T] */
const float *ecc_run_token_logprobs(const ecc_run *r);       /* [T - n_input] */
/* The device that ran it: "cpu" or "cuda". */
const char *ecc_run_device(const ecc_run *r);
/* A one-line notice for the user (e.g. why --device auto chose the CPU), or "". */
const char *ecc_run_notice(const ecc_run *r);
/* Record a timing (seconds) under a name, e.g. "load"; written to run.json. */
void ecc_run_add_timing(ecc_run *r, const char *name, double seconds);
/* Say that the first n_front and the last n_back tokens of the prompt were added by the tokenizer's
 * template (ecc_tokenize_ex's counts), not typed; run.json lists them. They are explained like any input. */
void ecc_run_mark_added(ecc_run *r, int n_front, int n_back);

/* Write DIR/run.json and DIR/tensors.safetensors (DIR is created). The prompt
 * text is recorded as given (may be NULL when ids were given). */
ecc_status ecc_run_write(const ecc_run *r, const ecc_model *m, const char *prompt_text, const char *dir);

/* ---- comparing representations (Ecco's ecco.analysis) ------------------ */

/* How similar two sets of activations over the same T tokens are, as Ecco
 * 0.1.2's ecco.analysis computes it (with Google's SVCCA code): 1 when one is
 * a linear transform of the other (an orthogonal one, for cka), towards 0 when
 * they are unrelated. acts1 (n1, T) and acts2 (n2, T) are in Ecco's layout
 * (neurons, tokens), row-major. Computed on the CPU, in float64 where Ecco's
 * numpy is (cka: float32 products summed in float64, as Ecco's float32 path).
 *   cca    mean canonical correlation (those making up 98 % of the sum); n1, n2 < T
 *   svcca  CCA of each side's top `dims` singular directions (Ecco's default 20),
 *          dims <= n1, n2 and dims < T; the mean of all canonical correlations
 *   pwcca  projection-weighted CCA (Ecco's default epsilon 1e-10); n1, n2 < T
 *   cka    linear centred kernel alignment; any n1, n2
 * cca and svcca regularise with Ecco's epsilon, 1e-10. Names and argument
 * order follow ecco.analysis: cca(acts1, acts2), svcca(acts1, acts2, dims),
 * pwcca(acts1, acts2, epsilon), cka(acts1, acts2). */
ecc_status ecc_cca(double *score, const float *acts1, const float *acts2, int n1, int n2, int T);
ecc_status ecc_svcca(double *score, const float *acts1, const float *acts2, int dims, int n1, int n2, int T);
ecc_status ecc_pwcca(double *score, const float *acts1, const float *acts2, double epsilon, int n1, int n2, int T);
ecc_status ecc_cka(double *score, const float *acts1, const float *acts2, int n1, int n2, int T);

typedef enum ecc_compare_method {
    ECC_COMPARE_CCA = 0,
    ECC_COMPARE_SVCCA = 1,
    ECC_COMPARE_PWCCA = 2,
    ECC_COMPARE_CKA = 3,
} ecc_compare_method;

typedef struct ecc_compare_options {
    ecc_compare_method method; /* default CKA */
    int dims;                  /* svcca: singular directions kept, default 20 */
    double epsilon;            /* cca, svcca, pwcca: default 1e-10 */
    ecc_device device;         /* default AUTO */
    int threads;               /* 0 = library default */
} ecc_compare_options;

void ecc_compare_options_default(ecc_compare_options *o);
/* "cca", "svcca", "pwcca", "cka" */
const char *ecc_compare_method_name(ecc_compare_method m);

/* Every layer of a against every layer of b over the same T tokens:
 * values (La, Lb), row-major, values[i * Lb + j] comparing layer i of a with
 * layer j of b. a (La, T, Na) and b (Lb, T, Nb) are in eccolo's layout
 * (layer, token, neuron), as a run's `activations` and `hidden_states`
 * tensors hold them. b may be a itself (same pointer and sizes): each layer
 * is then prepared once and the symmetric methods computed once per pair.
 * Each layer's preparation (centring, whitening, the Gram matrix) is done once,
 * not once per pair. A constant layer gives 0 (cca, svcca, pwcca, as Ecco's
 * cca) or NaN (cka, as Ecco). */
ecc_status ecc_compare_layers(double *values, const float *a, const float *b, int La, int Lb, int Na, int Nb, int T,
                              const ecc_compare_options *o);
/* ==== In memory: model sizes, options by name, a run's tensors and tokens,
 * NMF and the report page, saved runs ===================================
 * For bindings (the Python package in python/eccolo) and for C programs that
 * want results without a round trip through files. Sources: host/model/
 * model_api.c, host/engine/options_api.c, host/engine/run_api.c,
 * host/nmf/nmf_api.c, host/report/report_api.c. */

/* Free memory the library returned (ecc_run_report_html's page). */
void ecc_free(void *p);

/* -- the model, without depending on ecc_config's layout -- */
int ecc_model_n_layer(const ecc_model *m);     /* L */
int ecc_model_n_head(const ecc_model *m);      /* NH */
int ecc_model_n_embd(const ecc_model *m);      /* C */
int ecc_model_n_inner(const ecc_model *m);     /* F */
int ecc_model_n_positions(const ecc_model *m); /* the longest sequence */
int ecc_model_vocab_size(const ecc_model *m);  /* V (rows of the embedding) */
int ecc_model_n_tokens(const ecc_model *m);    /* ids the tokenizer knows (<= V) */
int32_t ecc_model_eos_token_id(const ecc_model *m); /* -1 when none */
const char *ecc_model_type(const ecc_model *m);  /* "gpt2" */
const char *ecc_model_dtype(const ecc_model *m); /* storage: "F32", "F16", "BF16", "mixed" */
/* The bytes token ID stands for (not NUL-terminated, *len bytes); NULL when
 * ID is out of range. Valid while the model is open. */
const uint8_t *ecc_token_bytes(const ecc_model *m, int32_t id, size_t *len);

/* -- options by name --
 * ecc_options_new gives default options (free with ecc_options_free);
 * ecc_options_set sets one by its command-line name without "--" and its
 * text, checked as the command line checks it, e.g. ("max-new-tokens", "35"),
 * ("attribution", "grad_x_input,ig"), ("layers", "2:6"), ("activations", "1"),
 * ("device", "cuda"), ("precision", "bf16"), ("mem-budget", "8G"). An unknown
 * name or a bad value is ECC_ERR_INPUT, naming both. ecc_options_set_ids sets
 * "continuation" or "watch" ids (borrowed: they must outlive the generate
 * call; n = 0 clears). */
ecc_options *ecc_options_new(void);
void ecc_options_free(ecc_options *o);
ecc_status ecc_options_set(ecc_options *o, const char *name, const char *value);
ecc_status ecc_options_set_ids(ecc_options *o, const char *which, const int32_t *ids, int n);

/* -- a run's description, tensors and tokens --
 * ecc_run_describe records what a run needs to stand alone, as run.json holds
 * it: the model's id, directory and config, the prompt text (may be NULL),
 * each token's text, and a random run id; a run read by ecc_run_load has it.
 * The calls below that need it fail with ECC_ERR_INPUT without it. */
ecc_status ecc_run_describe(ecc_run *r, const ecc_model *m, const char *prompt_text);
/* The description as JSON text (run.json without its file checks), valid
 * until the next call on this run or ecc_run_free; NULL when not described. */
const char *ecc_run_json(const ecc_run *r);
/* Token i as the views show it (UTF-8), and whether it continues a word or
 * holds part of a character; NULL when not described or i is out of range. */
const char *ecc_run_token_text(const ecc_run *r, int i, int *partial);

/* The run's named tensors, as tensors.safetensors holds them: token_ids I32
 * [T], token_logprobs F32 [T - n_input], then attribution.<method> F32 [G, T],
 * activations F32 [L', T, F], hidden_states, attention, rankings, ... (the
 * README lists them). data is host memory owned by the run, C order, valid
 * until ecc_run_free. */
typedef struct ecc_tensor_info {
    const char *name;
    const char *dtype; /* "F32", "I32", ... as safetensors spells it */
    int ndim;
    int64_t shape[8];
    const void *data;
    size_t nbytes;
} ecc_tensor_info;
int ecc_run_n_tensors(const ecc_run *r);
ecc_status ecc_run_tensor_at(const ecc_run *r, int i, ecc_tensor_info *out);
/* By name; ECC_ERR_INPUT (listing the names there are) when absent. */
ecc_status ecc_run_find_tensor(const ecc_run *r, const char *name, ecc_tensor_info *out);
/* Move the tensors of SRC that DST lacks into DST (SRC keeps the others):
 * both must hold the same tokens, and be described; DST's description then
 * lists what was added. For explanations computed later over the same
 * tokens (a forced run of DST's tokens). Existing tensors are never
 * replaced, so pointers into DST stay valid. */
ecc_status ecc_run_merge(ecc_run *dst, ecc_run *src);

/* Write a described run as ecc_run_write does (DIR/run.json and
 * DIR/tensors.safetensors), with its own run id; read one back (validated as
 * eccolo report reads it). */
ecc_status ecc_run_save(const ecc_run *r, const char *dir);
ecc_status ecc_run_load(ecc_run **out, const char *dir);

/* -- NMF of activations, in memory (as eccolo nmf computes it) -- */
typedef struct ecc_factors ecc_factors;
typedef struct ecc_nmf_request {
    int n_components;         /* K, default 10 */
    int layer_from, layer_to; /* layers [from, to); -1 = the range the runs captured */
    const char *init;         /* "random" (default), "nndsvd", "nndsvda" */
    const char *solver;       /* "mu" (default), "hals" */
    int max_iter;             /* default 500 */
    double tol;               /* default 1e-4 */
    uint64_t seed;            /* default 0 */
    ecc_device device;        /* default AUTO */
    int threads;              /* 0 = library default */
} ecc_nmf_request;
void ecc_nmf_request_default(ecc_nmf_request *q);
/* X = max(activations, 0) of the runs' positions (one run after another) x
 * (layer, neuron) columns, X ~ W H. The runs must be described. */
ecc_status ecc_nmf_compute(ecc_factors **out, const ecc_run *const *runs, int n_runs, const ecc_nmf_request *q);
/* "factors" F32 [K, T_total] (W^T), "loadings" F32 [K, F'], "offsets" I32
 * [runs + 1]; data owned by f. */
ecc_status ecc_factors_tensor(const ecc_factors *f, const char *name, ecc_tensor_info *out);
/* Metadata as nmf.safetensors holds it ("relative_error", "iterations",
 * "layer_from", "layer_to", "init", "solver", ...); NULL when absent. */
const char *ecc_factors_meta(const ecc_factors *f, const char *key);
ecc_status ecc_factors_save(const ecc_factors *f, const char *path);
ecc_status ecc_factors_load(ecc_factors **out, const char *path);
void ecc_factors_free(ecc_factors *f);

/* -- the report page, in memory --
 * The self-contained page `eccolo report` writes, for a described run and
 * optional factors (NULL: none); show (NULL or a JSON object) chooses what it
 * opens on: {"view": "saliency"|"nmf"|"rankings"|"neurons"|"attention",
 * "method": "ig", "detailed": true, "token": g, "layer": l, "head": h}.
 * *html is NUL-terminated, *len bytes; free it with ecc_free. */
ecc_status ecc_run_report_html(char **html, size_t *len, const ecc_run *r, const ecc_factors *nmf, const char *show);

#ifdef __cplusplus
}
#endif
#endif /* ECCOLO_H */
