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

/* snapshots/<refs/main>, or the only snapshot when refs/main is missing. */
static char *snapshot_of(const char *repo_dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/refs/main", repo_dir);
    char *ref = NULL;
    size_t len;
    if (ecc_read_file(buf, 256, &ref, &len) == ECC_OK) {
        while (len && (ref[len - 1] == '\n' || ref[len - 1] == '\r' || ref[len - 1] == ' '))
            ref[--len] = '\0';
        snprintf(buf, sizeof buf, "%s/snapshots/%s", repo_dir, ref);
        free(ref);
        if (len && !strchr(buf + strlen(repo_dir) + 11, '/') && ecc_dir_exists(buf))
            return ecc_strdup(buf);
    }
    ecc_clear_error();
    snprintf(buf, sizeof buf, "%s/snapshots", repo_dir);
    DIR *d = opendir(buf);
    if (!d)
        return NULL;
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
        return NULL;
    }
    return found;
}

static char *lookup(const char *root, const char *id)
{
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
        return NULL;
    char *snap = ecc_dir_exists(repo) ? snapshot_of(repo) : NULL;
    free(repo);
    return snap;
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
    char *found = lookup(root, path_or_id);
    if (!found && !strchr(path_or_id, '/')) {
        static const char *orgs[] = {"openai-community", "distilbert"};
        for (size_t i = 0; !found && i < sizeof orgs / sizeof *orgs; i++) {
            char alias[512];
            snprintf(alias, sizeof alias, "%s/%s", orgs[i], path_or_id);
            found = lookup(root, alias);
        }
    }
    if (!found) {
        ecc_status s = ecc_fail(ECC_ERR_INPUT, "model '%s': not a directory, and not in the Hugging Face cache at %s; "
                                "download it once with `huggingface-cli download %s` (or pass a directory)",
                                path_or_id, root, path_or_id);
        free(root);
        return s;
    }
    free(root);
    *dir = found;
    return ECC_OK;
}
