#include "engine/sampling.h"

#include <math.h>
#include <stdlib.h>

typedef struct scored {
    float z;
    int32_t id;
} scored;

static int by_score_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->z != y->z)
        return x->z > y->z ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

float ecc_log_softmax_at(const float *logits, int V, int32_t id)
{
    float mx = logits[0];
    for (int i = 1; i < V; i++)
        mx = fmaxf(mx, logits[i]);
    double s = 0;
    for (int i = 0; i < V; i++)
        s += exp((double)logits[i] - mx);
    return (float)((double)logits[id] - mx - log(s));
}

static int32_t argmax(const float *x, int V)
{
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Returns -1 only when out of memory (the caller then falls back to arg-max). */
static int32_t sample(const float *logits, int V, const ecc_pick_params *p, uint64_t step)
{
    scored *s = malloc(sizeof(scored) * (size_t)V);
    if (!s)
        return -1;
    for (int i = 0; i < V; i++)
        s[i] = (scored){logits[i] / p->temperature, i};
    qsort(s, (size_t)V, sizeof *s, by_score_desc);
    int n = (p->top_k > 0 && p->top_k < V) ? p->top_k : V;
    /* softmax over the kept ids, as probabilities relative to the best */
    double total = 0, best = s[0].z;
    for (int i = 0; i < n; i++) {
        s[i].z = (float)exp((double)s[i].z - best);
        total += s[i].z;
    }
    if (p->top_p < 1.0f) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += s[i].z / total;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        total = 0;
        for (int i = 0; i < n; i++)
            total += s[i].z;
    }
    double u = (double)ecc_uniform(p->seed, step) * total, cum = 0;
    int32_t tok = s[n - 1].id;
    for (int i = 0; i < n; i++) {
        cum += s[i].z;
        if (cum > u) {
            tok = s[i].id;
            break;
        }
    }
    free(s);
    return tok;
}

void ecc_pick(int32_t *token, float *logprob, const float *logits, int V, int32_t forced, const ecc_pick_params *p,
              uint64_t step)
{
    /* the choice is among the tokenizer's ids: a padding row is never text */
    const int Vt = p->n_tokens > 0 && p->n_tokens < V ? p->n_tokens : V;
    int32_t t = forced;
    if (t < 0 && !p->greedy)
        t = sample(logits, Vt, p, step);
    if (t < 0)
        t = argmax(logits, Vt);
    *token = t;
    *logprob = ecc_log_softmax_at(logits, V, t);
}
