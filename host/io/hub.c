#include "io/hub.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static char *cache_root(void)
{
    const char *v;
    if ((v = getenv("HF_HUB_CACHE")) && *v)
        return ecc_strdup(v);
    if ((v = getenv("HF_HOME")) && *v)
        return ecc_path_join(v, "hub");
    if ((v = getenv("XDG_CACHE_HOME")) && *v)
        return ecc_path_join(v, "huggingface/hub");
    if ((v = getenv("HOME")) && *v)
        return ecc_path_join(v, ".cache/huggingface/hub");
    return NULL;
}

/* A repo id is ORG/NAME or NAME: letters, digits, '-', '_', '.', no "..". */
static int valid_repo_id(const char *id)
{
    int slashes = 0;
    if (!*id || id[0] == '.' || id[0] == '/' || strstr(id, ".."))
        return 0;
    for (const char *p = id; *p; p++) {
        if (*p == '/')
            slashes++;
        else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                   *p == '-' || *p == '_' || *p == '.'))
            return 0;
    }
    return slashes <= 1 && id[strlen(id) - 1] != '/';
}

/* *snap = snapshots/<refs/main>, or the only snapshot when refs/main is
 * missing; NULL when neither. A refs/main that exists but cannot be read (a
 * FIFO, a device, no permission) is an error, not a reason to guess. */
static ecc_status snapshot_of(char **snap, const char *repo_dir)
{
    *snap = NULL;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/refs/main", repo_dir);
    if (ecc_file_exists(buf)) {
        char *ref = NULL;
        size_t len;
        ECC_TRY(ecc_read_file(buf, 256, &ref, &len));
        while (len && (ref[len - 1] == '\n' || ref[len - 1] == '\r' || ref[len - 1] == ' '))
            ref[--len] = '\0';
        snprintf(buf, sizeof buf, "%s/snapshots/%s", repo_dir, ref);
        free(ref);
        if (len && !strchr(buf + strlen(repo_dir) + 11, '/') && ecc_dir_exists(buf)) {
            *snap = ecc_strdup(buf);
            return *snap ? ECC_OK : ECC_ERR_NOMEM;
        }
    }
    snprintf(buf, sizeof buf, "%s/snapshots", repo_dir);
    DIR *d = opendir(buf);
    if (!d)
        return ECC_OK;
    char *found = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        n++;
        free(found);
        found = ecc_path_join(buf, e->d_name);
    }
    closedir(d);
    if (n != 1) {
        free(found);
        return ECC_OK;
    }
    *snap = found;
    return found ? ECC_OK : ECC_ERR_NOMEM;
}

static ecc_status lookup(char **snap, const char *root, const char *id)
{
    *snap = NULL;
    char name[600];
    int o = snprintf(name, sizeof name, "models--");
    for (const char *p = id; *p && o < (int)sizeof name - 3; p++) {
        if (*p == '/') {
            name[o++] = '-';
            name[o++] = '-';
        } else {
            name[o++] = *p;
        }
    }
    name[o] = '\0';
    char *repo = ecc_path_join(root, name);
    if (!repo)
        return ECC_ERR_NOMEM;
    ecc_status s = ecc_dir_exists(repo) ? snapshot_of(snap, repo) : ECC_OK;
    free(repo);
    return s;
}

ecc_status ecc_resolve_model(char **dir, const char *path_or_id)
{
    *dir = NULL;
    if (ecc_dir_exists(path_or_id)) {
        *dir = ecc_strdup(path_or_id);
        return *dir ? ECC_OK : ECC_ERR_NOMEM;
    }
    if (!valid_repo_id(path_or_id))
        return ecc_fail(ECC_ERR_INPUT, "model '%s': no such directory", path_or_id);
    char *root = cache_root();
    if (!root)
        return ecc_fail(ECC_ERR_INPUT, "model '%s': not a directory, and HOME is not set to find the Hugging Face "
                        "cache", path_or_id);
    char *found = NULL;
    ecc_status s = lookup(&found, root, path_or_id);
    if (s == ECC_OK && !found && !strchr(path_or_id, '/')) {
        static const char *orgs[] = {"openai-community", "distilbert"};
        for (size_t i = 0; s == ECC_OK && !found && i < sizeof orgs / sizeof *orgs; i++) {
            char alias[512];
            snprintf(alias, sizeof alias, "%s/%s", orgs[i], path_or_id);
            s = lookup(&found, root, alias);
        }
    }
    if (s != ECC_OK) {
        free(root);
        return ecc_fail_prefix(s, "model '%s' in the Hugging Face cache: ", path_or_id);
    }
    if (!found) {
        s = ecc_fail(ECC_ERR_INPUT, "model '%s': not a directory, and not in the Hugging Face cache at %s; "
                                "download it once with `huggingface-cli download %s` (or pass a directory)",
                                path_or_id, root, path_or_id);
        free(root);
        return s;
    }
    free(root);
    *dir = found;
    return ECC_OK;
}
