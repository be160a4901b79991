/* NFC, NFD, NFKC, NFKD of the tokenizer's normalizers against Unicode's own
 * conformance file (NormalizationTest.txt, the lines of characters assigned by
 * Unicode 9.0, the version tokenizers' normalizer crate has; made by
 * tools/gen_unicode_tables.py): for every line c1..c5,
 *   NFC:  c2 = NFC(c1) = NFC(c2) = NFC(c3),  c4 = NFC(c4) = NFC(c5)
 *   NFD:  c3 = NFD(c1) = NFD(c2) = NFD(c3),  c5 = NFD(c4) = NFD(c5)
 *   NFKC: c4 = NFKC(c1..c5)      NFKD: c5 = NFKD(c1..c5) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "model/tokenizer/tok.h"
#include "util.h"

/* "0044 0307" -> UTF-8 in out (NUL-terminated); its length. */
static size_t field_utf8(uint8_t *out, const char *f, const char *end)
{
    size_t n = 0;
    while (f < end) {
        char *stop;
        unsigned long cp = strtoul(f, &stop, 16);
        if (stop == f)
            break;
        n += (size_t)utf8_put(out + n, (uint32_t)cp);
        f = stop;
        while (f < end && *f == ' ')
            f++;
    }
    out[n] = '\0';
    return n;
}

static void expect_form(int form, const uint8_t *in, size_t n, const uint8_t *want, size_t wn, int line, int col)
{
    static const char *names[] = {"NFC", "NFD", "NFKC", "NFKD"};
    uint8_t *out;
    size_t len;
    cr_assert_eq(uni_normalize(&out, &len, in, n, form), ECC_OK, "%s", ecc_last_error());
    cr_expect(len == wn && memcmp(out, want, len) == 0, "line %d: %s(c%d) differs", line, names[form], col + 1);
    free(out);
}

Test(unicode, normalization_test_conformance)
{
    char *path = fixture_path("unicode_normalization.txt"), *data;
    size_t len;
    cr_assert_eq(ecc_read_file(path, 1 << 24, &data, &len), ECC_OK, "%s", ecc_last_error());
    int line = 0, checked = 0;
    for (char *p = data; p && *p; line++) {
        char *eol = strchr(p, '\n');
        if (*p != '#') {
            uint8_t c[5][256];
            size_t cn[5];
            char *f = p;
            for (int k = 0; k < 5; k++) {
                char *semi = strchr(f, ';');
                cr_assert(semi && (!eol || semi < eol), "line %d: 5 fields", line);
                cn[k] = field_utf8(c[k], f, semi);
                f = semi + 1;
            }
            for (int k = 0; k < 5; k++) {
                expect_form(UNI_NFC, c[k], cn[k], c[k < 3 ? 1 : 3], cn[k < 3 ? 1 : 3], line, k);
                expect_form(UNI_NFD, c[k], cn[k], c[k < 3 ? 2 : 4], cn[k < 3 ? 2 : 4], line, k);
                expect_form(UNI_NFKC, c[k], cn[k], c[3], cn[3], line, k);
                expect_form(UNI_NFKD, c[k], cn[k], c[4], cn[4], line, k);
            }
            checked++;
        }
        p = eol ? eol + 1 : NULL;
    }
    cr_expect_gt(checked, 3000, "only %d lines", checked);
    free(data), free(path);
}

/* Characters assigned after Unicode 9.0 are left alone, as tokenizers does:
 * U+1DFA (combining dot below left, 10.0) has class 218 now, so Python's NFD
 * moves it before U+0301 (230); tokenizers 0.23.3 does not (NFD().normalize_str gives a U+0301 U+1DFA). */
Test(unicode, characters_after_9_0_are_unchanged)
{
    const uint8_t s[] = "a\xCC\x81\xE1\xB7\xBA"; /* a U+0301 U+1DFA */
    uint8_t *out;
    size_t len;
    cr_assert_eq(uni_normalize(&out, &len, s, sizeof s - 1, UNI_NFD), ECC_OK);
    cr_expect(len == sizeof s - 1 && memcmp(out, s, len) == 0);
    free(out);
    cr_expect(uni_is_numeric('7') && uni_is_numeric(0x0663) && uni_is_numeric(0x2460) && !uni_is_numeric('x'));
    cr_expect(uni_is_white_space(0x85) && uni_is_white_space(0x3000) && !uni_is_white_space(0x180E) &&
              !uni_is_white_space(0x200B));
}
