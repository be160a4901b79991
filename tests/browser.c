/* Headless Chromium for the tests of eccolo's HTML pages (eccolo report,
 * eccolo compare --html): run a page, read its self-check, fail on console
 * errors. Chromium is found as $ECCOLO_CHROMIUM, /usr/lib/chromium/chromium or
 * /usr/bin/chromium (apt-get install chromium; tools/setup.sh installs it). */
#define _GNU_SOURCE
#include "browser.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "util.h"

const char *chromium(void)
{
    static const char *const cands[] = {"/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser"};
    const char *env = getenv("ECCOLO_CHROMIUM");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++)
        if (access(cands[i], X_OK) == 0)
            return cands[i];
    return NULL;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Run headless Chromium on file://HTML#HASH with one mode argument
 * (--dump-dom or --screenshot=FILE); stdout and stderr returned; wall time
 * in *secs. Fails the test with a clear message when Chromium is missing. */
int browse(const char *html, const char *hash, const char *mode, char **out, char **err, double *secs)
{
    const char *bin = chromium();
    cr_assert(bin, "Chromium not found (looked for $ECCOLO_CHROMIUM, /usr/lib/chromium/chromium, /usr/bin/chromium): "
                   "install it with apt-get install chromium (tools/setup.sh does) to run the browser tests");
    char *profile = test_tmpdir("chromium-profile");
    char url[8192], udd[4200];
    char *abs = realpath(html, NULL);
    cr_assert(abs);
    snprintf(url, sizeof url, "file://%s%s%s", abs, hash ? "#" : "", hash ? hash : "");
    snprintf(udd, sizeof udd, "--user-data-dir=%s", profile);
    const char *argv[] = {"timeout", "-k", "5", "90", bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                          "--no-first-run", "--disable-background-networking", "--disable-component-update",
                          "--disable-sync", "--hide-scrollbars", "--window-size=1280,900", udd, "--enable-logging=stderr",
                          "--v=0", mode, url, NULL};
    char oname[] = "/tmp/ecc-chr-out-XXXXXX", ename[] = "/tmp/ecc-chr-err-XXXXXX";
    int ofd = mkstemp(oname), efd = mkstemp(ename);
    cr_assert(ofd >= 0 && efd >= 0);
    double t0 = ecc_now();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        execvp("timeout", (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (secs)
        *secs = ecc_now() - t0;
    char *o, *e;
    size_t n;
    cr_assert_eq(ecc_read_file(oname, (size_t)1 << 30, &o, &n), ECC_OK);
    cr_assert_eq(ecc_read_file(ename, (size_t)1 << 30, &e, &n), ECC_OK);
    close(ofd);
    close(efd);
    unlink(oname);
    unlink(ename);
    rm_rf(profile);
    free(profile);
    free(abs);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Fail on console errors of the page (uncaught exceptions, console.error). */
void assert_clean_console(const char *err)
{
    for (const char *line = err; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char *l = strndup(line, n);
        if (strstr(l, "CONSOLE") && (strstr(l, "Uncaught") || strstr(l, "Error")))
            cr_assert_fail("the page logged an error: %s", l);
        free(l);
        line = end ? end + 1 : NULL;
    }
}

cJSON *page_result(const char *html, const char *spec, double *secs)
{
    char hash[256], *out, *err;
    snprintf(hash, sizeof hash, "test=%s", spec);
    int rc = browse(html, hash, "--dump-dom", &out, &err, secs);
    cr_assert_eq(rc, 0, "chromium exited with %d: %.2000s", rc, err);
    assert_clean_console(err);
    const char *tag = "<pre id=\"test-result\" hidden=\"\">";
    char *s = strstr(out, tag);
    cr_assert(s, "no test result in the page (did the script run?): %.2000s", err);
    s += strlen(tag);
    char *e = strstr(s, "</pre>");
    cr_assert(e);
    /* undo the serialiser's escapes */
    char *json = malloc((size_t)(e - s) + 1), *o = json;
    static const struct {
        const char *esc, c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}};
    for (const char *p = s; p < e;) {
        size_t i;
        for (i = 0; i < sizeof ents / sizeof *ents; i++)
            if (!strncmp(p, ents[i].esc, strlen(ents[i].esc)))
                break;
        if (i < sizeof ents / sizeof *ents) {
            *o++ = ents[i].c;
            p += strlen(ents[i].esc);
        } else
            *o++ = *p++;
    }
    *o = '\0';
    cJSON *j = cJSON_Parse(json);
    cr_assert(j, "test result is not JSON: %.500s", json);
    const cJSON *errors = cJSON_GetObjectItem(j, "errors");
    cr_assert_eq(cJSON_GetArraySize(errors), 0, "page errors: %s", json);
    free(json);
    free(out);
    free(err);
    return j;
}
