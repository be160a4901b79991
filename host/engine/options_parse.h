/* Parsing option values from text, shared by the command line (host/cli/
 * cli.c wraps each in its one-line error) and ecc_options_set
 * (options_api.c). Each returns ECC_OK or ECC_ERR_INPUT with a message that
 * names the option (OPT, e.g. "--top-k") and the text. */
#ifndef ECC_OPTIONS_PARSE_H
#define ECC_OPTIONS_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "eccolo.h"

ecc_status ecc_parse_int(const char *opt, const char *s, long lo, long hi, int *out);
ecc_status ecc_parse_float(const char *opt, const char *s, double lo, double hi, float *out);
ecc_status ecc_parse_u64(const char *opt, const char *s, uint64_t *out);
/* "grad_x_input,saliency,ig" -> ECC_ATTR_* bits (at least one) */
ecc_status ecc_parse_methods(const char *s, unsigned *bits);
ecc_status ecc_parse_target(const char *s, ecc_target *t);
/* "a:b" -> the layers [a, b) */
ecc_status ecc_parse_layers(const char *s, int *from, int *to);
/* "512M", "8G", "1.5G", "4096" -> bytes (binary units) */
ecc_status ecc_parse_size(const char *opt, const char *s, size_t *out);
ecc_status ecc_parse_device(const char *s, ecc_device *d);
ecc_status ecc_parse_precision(const char *s, ecc_precision *p);
ecc_status ecc_parse_lens(const char *s, ecc_lens *l);

#endif
