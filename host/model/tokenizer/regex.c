/* Patterns from tokenizer.json, written for Oniguruma (the engine Hugging
 * Face's tokenizers compiles them with, Ruby syntax), run through PCRE2.
 *
 * The two engines agree on the constructs tokenizer files use, except these,
 * which are rewritten before PCRE2 sees the pattern:
 *   \s \S  Oniguruma: U+0009-000D, U+0085 and the Z categories; PCRE2 lacks U+0085
 *   \w \W  Oniguruma: letters, marks, numbers, connector punctuation
 *   \h \H  Oniguruma: a hexadecimal digit (PCRE2: horizontal space)
 *   (?m)   Ruby: dot matches newline (PCRE2: (?s)); ^ and $ always match at
 *          line ends (PCRE2_MULTILINE)
 * Negated classes inside brackets ([\S]) and nested brackets are refused. */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok.h"
#include "util.h"

#define WS "\\t\\n\\x0B\\f\\r\\x20\\x85\\xA0\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define WORD "\\p{L}\\p{M}\\p{N}\\p{Pc}"
#define HEX "0-9a-fA-F"

static ecc_status translate(tok_buf *o, const char *p, const char *what)
{
    size_t n = strlen(p);
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[++i];
            const char *set = e == 's' || e == 'S' ? WS : e == 'w' || e == 'W' ? WORD : e == 'h' || e == 'H' ? HEX : NULL;
            int neg = e == 'S' || e == 'W' || e == 'H';
            if (!set) {
                char esc[2] = {'\\', e};
                ECC_TRY(buf_add(o, esc, 2));
            } else if (in_class && neg) {
                return ecc_fail(ECC_ERR_UNSUPPORTED, "%s: \\%c inside brackets is not supported", what, e);
            } else if (in_class) {
                ECC_TRY(buf_add(o, set, strlen(set)));
            } else {
                ECC_TRY(buf_add(o, neg ? "[^" : "[", neg ? 2 : 1));
                ECC_TRY(buf_add(o, set, strlen(set)));
                ECC_TRY(buf_add(o, "]", 1));
            }
            continue;
        }
        if (c == '[') {
            if (in_class && !(i + 1 < n && p[i + 1] == ':'))
                return ecc_fail(ECC_ERR_UNSUPPORTED, "%s: nested brackets are not supported", what);
            if (!in_class) {
                in_class = 1;
                ECC_TRY(buf_add(o, "[", 1));
                if (i + 1 < n && p[i + 1] == '^') {
                    ECC_TRY(buf_add(o, "^", 1));
                    i++;
                }
                if (i + 1 < n && p[i + 1] == ']') { /* a leading ] is a literal */
                    ECC_TRY(buf_add(o, "\\]", 2));
                    i++;
                }
                continue;
            }
            const char *close = strstr(p + i, ":]"); /* [:alpha:] */
            if (!close)
                return ecc_fail(ECC_ERR_FORMAT, "%s: unterminated [: in a class", what);
            ECC_TRY(buf_add(o, p + i, (size_t)(close + 2 - (p + i))));
            i = (size_t)(close + 1 - p);
            continue;
        }
        if (c == ']' && in_class) {
            in_class = 0;
        } else if (c == '(' && !in_class && i + 1 < n && p[i + 1] == '?') {
            size_t j = i + 2; /* (?imx-imx) or (?imx-imx: ... */
            while (j < n && strchr("imx-", p[j]))
                j++;
            if (j > i + 2 && j < n && (p[j] == ':' || p[j] == ')')) {
                ECC_TRY(buf_add(o, "(?", 2));
                for (size_t k = i + 2; k < j; k++)
                    ECC_TRY(buf_add(o, p[k] == 'm' ? "s" : &p[k], 1));
                i = j - 1;
                continue;
            }
        }
        ECC_TRY(buf_add(o, &c, 1));
    }
    return buf_add(o, "", 1);
}

ecc_status re_compile(pcre2_code **out, const char *pattern, const char *what)
{
    tok_buf b = {0};
    *out = NULL;
    ecc_status s = translate(&b, pattern, what);
    if (s != ECC_OK) {
        free(b.p);
        return s;
    }
    int err;
    PCRE2_SIZE at;
    *out = pcre2_compile((PCRE2_SPTR)b.p, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &at,
                         NULL);
    free(b.p);
    if (!*out) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return ecc_fail(ECC_ERR_UNSUPPORTED, "%s: PCRE2 cannot compile the pattern '%.80s': %s", what, pattern,
                        (char *)msg);
    }
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* without JIT, the interpreter runs */
    return ECC_OK;
}

int re_next(re_iter *it, size_t *ms, size_t *me)
{
    while (it->at <= it->len) {
        int rc = pcre2_match(it->re, it->s, it->len, it->at, PCRE2_NO_UTF_CHECK, it->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            return 0;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            ecc_fail(ECC_ERR_INPUT, "text: pattern matching failed at byte %zu: %s", it->at, (char *)msg);
            return -1;
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(it->md);
        if (ov[0] == ov[1] && it->have_last && it->last_end == ov[1]) { /* empty, right after the last match */
            if (it->at >= it->len)
                return 0;
            int k = utf8_step(it->s + it->at, it->len - it->at);
            it->at += (size_t)(k > 0 ? k : 1);
            continue;
        }
        *ms = ov[0], *me = ov[1];
        it->at = it->last_end = ov[1];
        it->have_last = 1;
        return 1;
    }
    return 0;
}
