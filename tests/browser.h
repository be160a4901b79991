/* Headless Chromium for the tests of eccolo's HTML pages (browser.c). */
#ifndef ECC_TEST_BROWSER_H
#define ECC_TEST_BROWSER_H

#include <cjson/cJSON.h>

/* The Chromium binary, or NULL when there is none. */
const char *chromium(void);
/* rm -r DIR */
void rm_rf(const char *dir);
/* Run headless Chromium on file://HTML#HASH with one mode argument
 * (--dump-dom or --screenshot=FILE); stdout and stderr returned; wall time
 * in *secs. Fails the test with a clear message when Chromium is missing. */
int browse(const char *html, const char *hash, const char *mode, char **out, char **err, double *secs);
/* Fail on console errors of the page (uncaught exceptions, console.error). */
void assert_clean_console(const char *err);
/* Run the page's self-check #test=SPEC: the JSON it writes into <pre
 * id="test-result">, after checking the console and the result's "errors". */
cJSON *page_result(const char *html, const char *spec, double *secs);

#endif
