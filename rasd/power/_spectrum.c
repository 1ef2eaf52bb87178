/*
 * The spectral half of the live power analysis in C (declared in _kernel.h): the order
 * statistics and the straight-line fit of rasd.power.stats, a small linear solver, and
 * rasd.power.spectrum's find_oscillation and band_energy_ratio over a real FFT of any length.
 *
 * Each function follows the NumPy code it replaces step for step, in the same order of
 * operations where that is possible, so the discrete outcomes (an oscillation found or not,
 * which peak wins) are the NumPy code's and the values agree to rounding. Sums whose order
 * NumPy fixes (np.sum and np.mean: pairwise summation) are done in that order; FFTs, einsum's
 * dot products and LAPACK's LU agree to rounding only. Build without floating-point contraction
 * (-ffp-contract=off) and never with -ffast-math: NaN tests and comparisons must stay IEEE.
 *
 * Plain C, no Python API: loaded with ctypes (rasd.power.kernel).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernel.h"

/* rasd.power.spectrum's constants (see there for why each has its value). */
#define DETECTION_RATIO 20.0
#define ZERO_PAD 8
#define MAX_PADDED (1 << 16)
#define CANDIDATES 6
#define MAX_HARMONIC 8
#define SUBHARMONIC_SHARE 0.5
#define THIRDS_SHARE 0.4
#define MIN_CYCLES 3.0

/* ---- sums ------------------------------------------------------------------------------- */

/* np.add.reduce over a contiguous float64 array: NumPy's pairwise summation (eight running
 * partial sums in blocks of at most 128, halves above that), so np.sum and np.mean are matched
 * to the bit, not just to rounding. */
static double pairwise_sum(const double *a, long n)
{
    if (n < 8) {
        double res = -0.0; /* NumPy starts from -0.0 so that a sum of -0.0s stays -0.0 */
        for (long i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        long i;
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    long half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

/* sum over i of (a[i] - am) * (b[i] - bm): np.einsum("i,i->", a - am, b - bm) in the order of
 * NumPy's x86-64 einsum kernel (two lanes, four vectors a round taken last to first, the lanes
 * added at the end), so the x86-64 wheels' values are matched to the bit; elsewhere to rounding.
 * am = bm = 0 is a plain dot product (x - 0 is x). */
static double dot_centred(const double *a, double am, const double *b, double bm, long n)
{
    double acc0 = 0.0, acc1 = 0.0;
    long i = 0;
    for (; n - i >= 8; i += 8) {
        for (int lane = 0; lane < 2; lane++) {
            double v = lane ? acc1 : acc0;
            for (int q = 3; q >= 0; q--) {
                long k = i + 2 * q + lane;
                v = (a[k] - am) * (b[k] - bm) + v;
            }
            if (lane)
                acc1 = v;
            else
                acc0 = v;
        }
    }
    for (; i < n; i += 2) {
        acc0 = (a[i] - am) * (b[i] - bm) + acc0;
        if (i + 1 < n)
            acc1 = (a[i + 1] - am) * (b[i + 1] - bm) + acc1;
    }
    return acc0 + acc1;
}

/* ---- median ----------------------------------------------------------------------------- */

/* Puts the k-th smallest of a[0..n) at a[k], smaller ones before it, larger ones after
 * (quickselect with a median-of-three pivot; no NaN in a). */
static void select_kth(double *a, long n, long k)
{
    long lo = 0, hi = n - 1;
    while (hi > lo) {
        long mid = lo + (hi - lo) / 2;
        /* order a[lo], a[mid], a[hi]; the middle one is the pivot */
        if (a[mid] < a[lo]) {
            double s = a[mid]; a[mid] = a[lo]; a[lo] = s;
        }
        if (a[hi] < a[lo]) {
            double s = a[hi]; a[hi] = a[lo]; a[lo] = s;
        }
        if (a[hi] < a[mid]) {
            double s = a[hi]; a[hi] = a[mid]; a[mid] = s;
        }
        double pivot = a[mid];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                double s = a[i]; a[i] = a[j]; a[j] = s;
                i++;
                j--;
            }
        }
        /* now a[lo..j] <= pivot <= a[i..hi], and a[j+1..i-1] == pivot */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
}

double pk_median(const double *x, int n, double *work)
{
    /* A median is one of the values (or the mean of two), so only the selection matters: any
     * correct selection gives np.median's value to the bit. */
    for (int i = 0; i < n; i++) {
        if (isnan(x[i]))
            return NAN; /* np.partition sorts NaN last, and stats.median answers NaN */
        work[i] = x[i];
    }
    long half = n / 2;
    select_kth(work, n, half);
    if (n % 2)
        return work[half];
    /* the largest of the lower half is the other middle value */
    double below = work[0];
    for (long i = 1; i < half; i++)
        if (work[i] > below)
            below = work[i];
    return (below + work[half]) / 2;
}

/* ---- detrend, window, solve ------------------------------------------------------------- */

void pk_detrend(const double *t, const double *w, int n, double *out)
{
    /* stats.detrend: tc = t - t.mean(); slope = <tc, w - wm> / <tc, tc>; out = w - wm - slope*tc.
     * tc is recomputed where it is used (no scratch: the header gives none). */
    double tm = pairwise_sum(t, n) / n;
    double wm = pairwise_sum(w, n) / n;
    double denom = dot_centred(t, tm, t, tm, n);
    double slope = denom > 0 ? dot_centred(t, tm, w, wm, n) / denom : 0.0;
    for (int i = 0; i < n; i++)
        out[i] = w[i] - wm - slope * (t[i] - tm);
}

void pk_hann(int n, double *out)
{
    /* np.hanning: 0.5 + 0.5 * cos(pi * k / (n - 1)) for k = 1 - n, 3 - n, ..., n - 1. */
    if (n == 1) {
        out[0] = 1.0;
        return;
    }
    for (int i = 0; i < n; i++) {
        double k = (double)(1 - n + 2 * i);
        out[i] = 0.5 + 0.5 * cos(M_PI * k / (double)(n - 1));
    }
}

int pk_solve(int m, double *a, double *b)
{
    /* LU with partial pivoting, as LAPACK's dgesv (behind np.linalg.solve) does: the pivot is
     * the first entry of largest magnitude in its column; an exactly zero pivot is singular. */
    for (int c = 0; c < m; c++) {
        int p = c;
        double best = fabs(a[c * m + c]);
        for (int r = c + 1; r < m; r++) {
            double v = fabs(a[r * m + c]);
            if (v > best) {
                best = v;
                p = r;
            }
        }
        if (best == 0.0)
            return -1;
        if (p != c) {
            for (int k = 0; k < m; k++) {
                double s = a[c * m + k];
                a[c * m + k] = a[p * m + k];
                a[p * m + k] = s;
            }
            double s = b[c];
            b[c] = b[p];
            b[p] = s;
        }
        double inv = 1.0 / a[c * m + c];
        for (int r = c + 1; r < m; r++) {
            double f = a[r * m + c] * inv;
            a[r * m + c] = f;
            for (int k = c + 1; k < m; k++)
                a[r * m + k] -= f * a[c * m + k];
            b[r] -= f * b[c];
        }
    }
    for (int r = m - 1; r >= 0; r--) {
        double s = b[r];
        for (int k = r + 1; k < m; k++)
            s -= a[r * m + k] * b[k];
        b[r] = s / a[r * m + r];
    }
    return 0;
}
