/* eccolo compare --html: one self-contained page (the report's stylesheet,
 * host/analysis/compare.html and compare.js embedded in the binary, the
 * values as JSON), written atomically. Every '<' of the JSON is written as
 * \u003c, so no path can close the <script> element that holds it. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/compare.h"
#include "util.h"

/* host/report/report.css (report_assets.c), compare.html and compare.js (compare_assets.c) */
extern const unsigned char ecc_report_css[], ecc_compare_html[], ecc_compare_js[];
extern const size_t ecc_report_css_len, ecc_compare_html_len, ecc_compare_js_len;

/* The JSON of --out, and what the page shows besides. */
static cJSON *meta_json(const ecc_compare_result *r)
{
    cJSON *m = ecc_compare_json(r);
    cJSON_AddStringToObject(m, "eccolo_version", ecc_version());
    cJSON_AddNumberToObject(m, "runs_a", r->runs_a);
    cJSON_AddNumberToObject(m, "runs_b", r->runs_b);
    if (!cJSON_GetObjectItem(m, "dims"))
        cJSON_AddNumberToObject(m, "dims", r->dims);
    return m;
}


ecc_status ecc_compare_write_html(const ecc_compare_result *r, const char *path)
{
    cJSON *m = meta_json(r);
    char *json = m ? cJSON_PrintUnformatted(m) : NULL;
    cJSON_Delete(m);
    if (!json)
        return ecc_fail(ECC_ERR_NOMEM, "compare: out of memory printing the page's data");
    ecc_atomic_file af;
    ecc_status s = ecc_atomic_open(&af, path);
    int ok = s == ECC_OK;
    for (const char *p = (const char *)ecc_compare_html; ok && s == ECC_OK;) {
        const char *open = strstr(p, "{{");
        if (!open) {
            ok = ecc_atomic_write(&af, p, strlen(p));
            break;
        }
        ok = ecc_atomic_write(&af, p, (size_t)(open - p));
        const char *name = open + 2;
        if (!strncmp(name, "CSS}}", 5)) {
            ok = ok && ecc_atomic_write(&af, ecc_report_css, ecc_report_css_len);
        } else if (!strncmp(name, "JS}}", 4)) {
            ok = ok && ecc_atomic_write(&af, ecc_compare_js, ecc_compare_js_len);
        } else if (!strncmp(name, "META}}", 6)) {
            for (const char *q = json; ok && *q; q++)
                ok = *q == '<' ? ecc_atomic_write(&af, "\\u003c", 6) : ecc_atomic_write(&af, q, 1);
        } else {
            s = ecc_fail(ECC_ERR_FORMAT, "compare template: unknown placeholder at '%.20s' (a build problem)", open);
        }
        const char *close = strstr(name, "}}");
        p = close ? close + 2 : name;
    }
    (void)ok; /* a failed write is recorded in af and reported by the commit */
    if (af.f)
        s = s == ECC_OK ? ecc_atomic_commit(&af) : (ecc_atomic_abort(&af), s);
    free(json);
    return s;
}
