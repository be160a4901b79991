/* Fuzz target: the batch prompts reader (host/jobs/batch.c). The input is a
 * prompts file (JSONL): each line through ecc_batch_parse_line, the whole
 * file through ecc_batch_read, and the same bytes as a manifest.jsonl
 * through ecc_batch_done_ids. Every item must come out well-formed: an id
 * that can name a directory (or "line:N"), and either an error or a prompt;
 * every done id read from a manifest can name a directory (or the manifest
 * is refused as damaged). */
#include "fuzz_common.h"

#include "jobs/batch.h"
#include "jobs/manifest.h"
#include "util.h"

/* from_file: a later line with an id already used keeps its prompt but gets an error */
static void check_item(const ecc_batch_item *it, int from_file)
{
    FUZZ_CHECK(it->id, "an item without an id (line %d)", it->line);
    FUZZ_CHECK(ecc_batch_id_ok(it->id) || (ecc_manifest_is_line_id(it->id) && it->error),
               "id '%s' cannot name a directory", it->id);
    int dup = from_file && it->error && !strncmp(it->error, "duplicate id", 12);
    FUZZ_CHECK(dup ? it->prompt != NULL : !it->error != !it->prompt, "line %d: error %p, prompt %p", it->line,
               (void *)it->error, (void *)it->prompt);
    FUZZ_CHECK(!it->continuation || it->prompt, "a continuation without a prompt");
    FUZZ_CHECK(it->max_new_tokens >= -1 && it->max_new_tokens <= (1 << 20), "max_new_tokens %d", it->max_new_tokens);
    int sh = ecc_batch_shard_of(it->id, 7);
    FUZZ_CHECK(sh >= 0 && sh < 7, "shard %d", sh);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* line by line, as the reader splits them */
    int line = 0, items = 0;
    for (size_t at = 0; at < size;) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t n = nl ? (size_t)(nl - (data + at)) : size - at;
        /* an exact-size copy: reading past the line is an ASan error */
        char *copy = malloc(n ? n : 1);
        if (!copy)
            abort();
        memcpy(copy, data + at, n);
        ecc_batch_item it;
        if (ecc_batch_parse_line(&it, copy, n, ++line)) {
            check_item(&it, 0);
            items++;
        }
        free(it.id), free(it.prompt), free(it.continuation), free(it.error);
        free(copy);
        at += n + 1;
    }
    /* the whole file */
    char path[1024];
    fuzz_write(path, sizeof path, "prompts.jsonl", data, size);
    ecc_batch_items b;
    ecc_status s = ecc_batch_read(&b, path);
    FUZZ_CHECK(s == ECC_OK, "ecc_batch_read: %s", ecc_last_error());
    FUZZ_CHECK(b.n == items, "%d items from the file, %d line by line", b.n, items);
    for (int i = 0; i < b.n; i++)
        check_item(&b.items[i], 1);
    /* unique ids among the items that can run */
    for (int i = 0; i < b.n; i++)
        for (int j = i + 1; j < b.n && j < i + 64; j++)
            FUZZ_CHECK(b.items[i].error || b.items[j].error || strcmp(b.items[i].id, b.items[j].id),
                       "id '%s' runs twice", b.items[i].id);
    ecc_batch_items_free(&b);
    /* the same bytes as a batch's manifest */
    char dir[1024];
    fuzz_subdir(dir, sizeof dir, "batch");
    fuzz_write(path, sizeof path, "batch/manifest.jsonl", data, size);
    char **ids = NULL;
    int n = 0;
    s = ecc_batch_done_ids(&ids, &n, dir);
    FUZZ_CHECK(s == ECC_OK || s == ECC_ERR_FORMAT, "ecc_batch_done_ids: %s", ecc_last_error());
    FUZZ_CHECK(s == ECC_OK || (!ids && !n), "a refused manifest gave %d ids", n);
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(ids[i] && ecc_batch_id_ok(ids[i]), "done id '%s' cannot name a directory", ids[i] ? ids[i] : "");
        for (int j = 0; j < i && j < 64; j++)
            FUZZ_CHECK(strcmp(ids[i], ids[i - 1 - j]), "done id '%s' listed twice", ids[i]);
    }
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return 0;
}
