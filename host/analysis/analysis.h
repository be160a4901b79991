/* Comparing representations as Ecco's ecco.analysis does (CCA, SVCCA, PWCCA,
 * linear CKA), every layer of one set against every layer of another, written
 * once over the backend op table (host/backend/backend.h): the products and
 * factorisations run on the backend, the O(T N) bookkeeping on the host.
 *
 * What Ecco 0.1.2 computes (ecco/analysis.py over Google's svcca_lib; acts in
 * Ecco's layout (neurons, tokens); here X (T, N) is the same matrix
 * transposed, as a run stores a layer):
 *
 *   CCA (get_cca_similarity, epsilon 1e-10, threshold 0.98), all in float64:
 *     S = cov(X, Y) (np.cov: centred, / (T - 1)); xmax = max|Sxx|, ymax = max|Syy|
 *     Sxx /= xmax, Syy /= ymax, Sxy /= sqrt(xmax ymax)
 *     keep the neurons with Sxx[i, i] >= eps (likewise for y), Sxx += eps I
 *     arr = Sxx^-1/2 Sxy Syy^-1/2 (pinv, then eigh of the inverse); s = svd(arr)
 *     cca = mean of s[:i], i the first index with sum(s[:i]) >= 0.98 sum(s)
 *   SVCCA: centre, SVD, keep diag(s[:dims]) V[:dims] of each side, CCA of those,
 *     the mean of all their canonical correlations
 *   PWCCA: from the same CCA (epsilon given), on the side with fewer kept
 *     neurons (x when equal): dirns = u^T (X - mu) + mu (u from numpy's svd of
 *     arr, LAPACK dgesdd: the means added back make the value depend on its
 *     signs), P = qr(dirns^T).Q, w_k = sum_j |P_k . x_j| normalised,
 *     pwcca = sum_k w_k s_k
 *   CKA (feature_space_linear_cka): centre; ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)
 *
 * How eccolo computes it (the same values, rounding aside):
 *   - CCA family: per layer, once: Sxx by a backend dgemm; eigh(Sxx + eps I)
 *     = V diag(w) V^T, Sxx^-1/2 = V^T diag(w^-1/2) V (the same matrix as Ecco's
 *     pinv-then-eigh, without squaring the condition number; eigenvalues pinv
 *     would cut, <= 1e-15 max(w), are cut); Z = Xc_kept Sxx^-1/2 / sqrt((T-1) xmax).
 *     Per pair: arr = Za^T Zb (one dgemm) and its singular values (backend svd).
 *   - PWCCA: arr is factorised on the host by LAPACK dgesdd exactly as numpy
 *     does (LAPACKE row-major: LAPACK sees arr itself), whatever the backend:
 *     the value depends on the signs of u, and only gesdd gives Ecco's; the
 *     rest (directions, QR, projections) on the backend.
 *     Ecco's branch for the y side reads acts1 where it means acts2 (an
 *     IndexError when the widths differ); eccolo uses acts2.
 *   - CKA: data centred in double, then float32 products (as Ecco's float32
 *     path) summed in double (be->dot): per layer the Gram matrix Xc Xc^T
 *     (T, T) when that is cheaper, so that a pair costs one dot product
 *     (<Ka, Kb> = ||Xc^T Yc||_F^2), else the features' products per pair.
 */
#ifndef ECC_ANALYSIS_H
#define ECC_ANALYSIS_H

#include "backend/backend.h"
#include "eccolo.h"

/* ecc_compare_layers on a given backend (the tests run it on both). */
ecc_status ecc_analysis_compare(ecc_backend *be, double *values, const float *a, const float *b, int La, int Lb,
                                int Na, int Nb, int T, const ecc_compare_options *o);

/* Does CKA take the Gram route (per layer Xc Xc^T) for these sizes? D layers
 * to prepare, P pairs; with the memory it may use. Exposed for the tests. */
int ecc_analysis_cka_gram(int64_t D, int64_t P, int64_t T, int64_t Na, int64_t Nb, size_t available);

#endif
