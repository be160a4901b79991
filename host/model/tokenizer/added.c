/* Added tokens (<|endoftext|>, <s>, <|im_start|>, ...): found in the text
 * before pre-tokenisation, leftmost first and then longest, the way
 * tokenizers' AddedVocabulary does with its Aho-Corasick automaton, with each
 * token's single_word, lstrip and rstrip flags applied to the match. */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok.h"
#include "util.h"

static ecc_status trie_node_new(tok_trie *tr, uint8_t byte, int32_t *out)
{
    if (tr->n == tr->cap) {
        int cap = tr->cap ? 2 * tr->cap : 64;
        trie_node *p = realloc(tr->node, (size_t)cap * sizeof *p);
        if (!p)
            return ecc_fail(ECC_ERR_NOMEM, "out of memory for the added-token trie");
        tr->node = p;
        tr->cap = cap;
    }
    tr->node[tr->n] = (trie_node){-1, -1, -1, byte};
    *out = tr->n++;
    return ECC_OK;
}

ecc_status trie_add(tok_trie *tr, const char *s, size_t len, int32_t added)
{
    int32_t node = 0;
    if (tr->n == 0)
        ECC_TRY(trie_node_new(tr, 0, &node));
    if (len == 0)
        return ECC_OK;
    tr->first[(uint8_t)s[0] >> 3] |= (uint8_t)(1u << ((uint8_t)s[0] & 7));
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = tr->node[node].child;
        while (c >= 0 && tr->node[c].byte != b)
            c = tr->node[c].sibling;
        if (c < 0) {
            ECC_TRY(trie_node_new(tr, b, &c));
            tr->node[c].sibling = tr->node[node].child;
            tr->node[node].child = c;
        }
        node = c;
    }
    if (tr->node[node].added < 0) /* the same string twice: the first wins */
        tr->node[node].added = added;
    return ECC_OK;
}

void trie_free(tok_trie *tr)
{
    free(tr->node);
    memset(tr, 0, sizeof *tr);
}

/* The leftmost-longest match at or after from: 1 with [*ms, *me) and the added index. */
static int trie_find(const tok_trie *tr, const uint8_t *s, size_t n, size_t from, size_t *ms, size_t *me, int32_t *a)
{
    if (tr->n == 0)
        return 0;
    for (size_t i = from; i < n; i++) {
        if (!(tr->first[s[i] >> 3] & (1u << (s[i] & 7))))
            continue;
        int32_t node = 0, best = -1;
        size_t end = 0;
        for (size_t j = i; j < n; j++) {
            int32_t c = tr->node[node].child;
            while (c >= 0 && tr->node[c].byte != s[j])
                c = tr->node[c].sibling;
            if (c < 0)
                break;
            node = c;
            if (tr->node[c].added >= 0)
                best = tr->node[c].added, end = j + 1;
        }
        if (best >= 0) {
            *ms = i, *me = end, *a = best;
            return 1;
        }
    }
    return 0;
}

/* Is the character ending at s[n) (n > 0) / starting at s[0] a word character (Rust regex \w)? */
static int word_at(const ecc_tokenizer *t, pcre2_match_data *md, const uint8_t *s, size_t n, int last)
{
    size_t i = 0;
    if (last)
        for (i = n - 1; i > 0 && (s[i] & 0xC0) == 0x80;)
            i--;
    int k = utf8_step(s + i, n - i);
    return k > 0 && pcre2_match(t->re_word, s + i, (size_t)k, 0, PCRE2_NO_UTF_CHECK, md, NULL) > 0;
}

ecc_status split_added(encoder *e, const tok_trie *tr, const uint8_t *s, size_t n, int at_origin, segment_fn seg)
{
    const ecc_tokenizer *t = e->t;
    size_t done = 0, from = 0, ms, me;
    int32_t a;
    while (trie_find(tr, s, n, from, &ms, &me, &a)) {
        const tok_added *tok = &t->added[a];
        from = me;
        if ((e->flags & ECC_TOK_SPECIAL_AS_TEXT) && tok->special)
            continue;
        if (tok->single_word && ((ms > 0 && word_at(t, e->md, s, ms, 1)) || (me < n && word_at(t, e->md, s + me, n - me, 0))))
            continue;
        size_t start = ms, stop = me;
        if (tok->lstrip) {
            while (start > done) {
                size_t i = start - 1;
                while (i > 0 && (s[i] & 0xC0) == 0x80)
                    i--;
                int k;
                if (!uni_is_white_space(utf8_get(s + i, &k)))
                    break;
                start = i;
            }
        }
        if (tok->rstrip) {
            while (stop < n) {
                int k;
                if (!uni_is_white_space(utf8_get(s + stop, &k)))
                    break;
                stop += (size_t)k;
            }
        }
        if (start > done)
            ECC_TRY(seg(e, s + done, start - done, at_origin && done == 0));
        ECC_TRY(ids_add(&e->out, tok->id));
        done = ECC_MAX(done, stop);
    }
    return done < n ? seg(e, s + done, n - done, at_origin && done == 0) : ECC_OK;
}
