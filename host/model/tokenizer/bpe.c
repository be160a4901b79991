/* The BPE model: one pre-tokenised piece -> ids, as tokenizers' BPE does it.
 *
 * The piece becomes symbols: its bytes (byte-level vocabularies) or its
 * characters looked up in the vocabulary, with byte fallback to <0xNN> tokens
 * and the unknown token (fused when fuse_unk) for characters it lacks. Then
 * pairs merge lowest rank first, ties leftmost, the way Hugging Face's Rust
 * BPE does (a min-heap of (rank, position) over a linked list of symbols,
 * stale entries skipped), so long words cost O(n log n). With ignore_merges,
 * a piece that is itself in the vocabulary is that token. */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok.h"
#include "util.h"

typedef struct heap_item {
    uint32_t rank, pos;
    int32_t id;
} heap_item;

static int heap_less(const heap_item *a, const heap_item *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(encoder *e, heap_item it)
{
    size_t i = e->heap_n++;
    while (i > 0 && heap_less(&it, &e->heap[(i - 1) / 2])) {
        e->heap[i] = e->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->heap[i] = it;
}

static heap_item heap_pop(encoder *e)
{
    heap_item top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_less(&e->heap[c + 1], &e->heap[c]))
            c++;
        if (!heap_less(&e->heap[c], &last))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0)
        e->heap[i] = last;
    return top;
}

/* Queue the merge of the symbol at pos with its right neighbour, if any. */
static void push_pair(encoder *e, int32_t pos)
{
    const pair_entry *m = pair_get(&e->t->merges, e->sym[pos], e->sym[e->next[pos]]);
    if (m)
        heap_push(e, (heap_item){m->rank, (uint32_t)pos, m->id});
}

static ecc_status grow_word(encoder *e, size_t n)
{
    size_t cap = ECC_MAX(n, 2 * e->cap);
    free(e->sym), free(e->prev), free(e->next), free(e->heap);
    e->sym = ecc_malloc(cap * sizeof *e->sym, "a word");
    e->prev = ecc_malloc(cap * sizeof *e->prev, "a word");
    e->next = ecc_malloc(cap * sizeof *e->next, "a word");
    e->heap = ecc_malloc(3 * cap * sizeof *e->heap, "a word's merges");
    e->cap = e->sym && e->prev && e->next && e->heap ? cap : 0;
    return e->cap ? ECC_OK : ECC_ERR_NOMEM;
}

void bpe_free(encoder *e)
{
    free(e->sym), free(e->prev), free(e->next), free(e->heap);
    e->sym = e->prev = e->next = NULL;
    e->heap = NULL;
    e->cap = 0;
}

/* The initial symbols of a piece of characters (not byte-mapped); returns their number. */
static size_t char_symbols(encoder *e, const uint8_t *w, size_t n)
{
    const ecc_tokenizer *t = e->t;
    size_t m = 0;
    int32_t unk = -1; /* a pending unknown token (tokenizers adds it at the next known character) */
    for (size_t i = 0; i < n;) {
        int k = utf8_step(w + i, n - i);
        if (k < 1)
            k = 1;
        int32_t id = str_get(&t->model, (const char *)w + i, (size_t)k);
        if (id >= 0) {
            if (unk >= 0)
                e->sym[m++] = unk, unk = -1;
            e->sym[m++] = id;
        } else {
            int all = t->byte_fallback;
            for (int b = 0; all && b < k; b++)
                all = t->fallback_id[w[i + b]] >= 0;
            if (all) {
                for (int b = 0; b < k; b++)
                    e->sym[m++] = t->fallback_id[w[i + b]];
            } else if (t->unk >= 0) {
                if (unk >= 0 && !t->fuse_unk)
                    e->sym[m++] = unk;
                unk = t->unk;
            } /* else: no unknown token, the character is dropped */
        }
        i += (size_t)k;
    }
    if (unk >= 0)
        e->sym[m++] = unk;
    return m;
}

ecc_status bpe_piece(encoder *e, const uint8_t *w, size_t n)
{
    const ecc_tokenizer *t = e->t;
    if (n == 0)
        return ECC_OK;
    if (t->ignore_merges || (!t->byte_level && n <= 4)) {
        int32_t id = str_get(&t->model, (const char *)w, n);
        if (id >= 0 && (t->ignore_merges || utf8_step(w, n) == (int)n))
            return ids_add(&e->out, id);
    }
    if (t->byte_level && n == 1)
        return ids_add(&e->out, t->byte_id[w[0]]);
    if (n > e->cap)
        ECC_TRY(grow_word(e, n));
    size_t m = n;
    if (t->byte_level)
        for (size_t i = 0; i < n; i++)
            e->sym[i] = t->byte_id[w[i]];
    else
        m = char_symbols(e, w, n);
    if (m == 0)
        return ECC_OK;
    for (size_t i = 0; i < m; i++) {
        e->prev[i] = (int32_t)i - 1;
        e->next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < m; i++)
        push_pair(e, (int32_t)i);
    while (e->heap_n > 0) {
        heap_item h = heap_pop(e);
        int32_t pos = (int32_t)h.pos, right = e->next[pos];
        if (e->sym[pos] < 0 || right < 0) /* stale: merged away, or no right neighbour */
            continue;
        const pair_entry *now = pair_get(&t->merges, e->sym[pos], e->sym[right]);
        if (!now || now->id != h.id) /* stale: a neighbour changed (HF compares the new id) */
            continue;
        e->sym[pos] = h.id;
        e->sym[right] = -1;
        e->next[pos] = e->next[right];
        if (e->next[pos] >= 0)
            e->prev[e->next[pos]] = pos;
        if (e->prev[pos] >= 0)
            push_pair(e, e->prev[pos]);
        if (e->next[pos] >= 0)
            push_pair(e, pos);
    }
    for (int32_t i = 0; i >= 0; i = e->next[i])
        ECC_TRY(ids_add(&e->out, e->sym[i]));
    return ECC_OK;
}
