/* Explanations of a finished run: one forward over the final sequence that
 * keeps what the captures and the backward pass need, then
 *   - the captures (activations, hidden states, attention),
 *   - the logit lens (rankings, layer predictions),
 *   - input saliency: a backward pass to the token embeddings whose batch
 *     dimension is the target token, in chunks sized by the memory budget
 *     (integrated gradients adds the alpha steps to that batch dimension).
 * Everything runs through the backend ops; results land in the run's tensors. */
#ifndef ECC_EXPLAIN_H
#define ECC_EXPLAIN_H

#include "engine/forward.h"
#include "engine/run.h"

#define ECC_DEFAULT_MEM_BUDGET ((size_t)4 << 30)

/* Does o ask for any explanation (and so for the saved forward pass)? */
int ecc_explain_wanted(const ecc_options *o);

/* Check the explanation options against the model before anything runs. */
ecc_status ecc_explain_check(const ecc_config *c, const ecc_options *o);

/* Compute every explanation the run's options ask for (nothing when none). */
ecc_status ecc_explain(ecc_run *r, const ecc_dmodel *dm);
/* The same for the runs of a batch (same options): they share the saved
 * forward's buffers and the backward's target chunks, in groups that fit the
 * memory budget. */
ecc_status ecc_explain_batch(ecc_run **runs, int n, const ecc_dmodel *dm);

/* Canonical method names, as in the output tensors: "grad_x_input",
 * "gradient", "integrated_gradients"; NULL for an unknown bit. */
const char *ecc_attr_name(unsigned method_bit);

/* n-point Gauss-Legendre nodes and weights on [0, 1] (alpha_k, w_k), as
 * Captum's default for integrated gradients. */
void ecc_gauss_legendre01(double *alpha, double *w, int n);

#endif
