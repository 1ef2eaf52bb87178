/*
 * The numeric primitives the kernel's other files share (declared in _kernel.h): NumPy's
 * pairwise sum and x86-64 dot product, the k-th smallest selection behind every median and
 * percentile, rasd.power.stats' median, percentiles, detrend and Hann window, and
 * np.linalg.solve for the small systems of the sinusoid fits.
 *
 * One copy of each, so the series half and the spectral half round alike: sums in NumPy's
 * order (np.sum and np.mean to the bit), order statistics with NumPy's sort order (NaN last).
 * Build without floating-point contraction (-ffp-contract=off) and never with -ffast-math: a
 * fused multiply-add rounds once where NumPy rounds twice, and NaN tests must stay IEEE.
 *
 * Plain C, no Python API: loaded with ctypes (rasd.power.kernel).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "_kernel.h"

/* ---- sums ------------------------------------------------------------------------------- */

/* np.add.reduce over a contiguous float64 array: NumPy's pairwise summation (eight running
 * partial sums in blocks of at most 128, halves above that), so np.sum and np.mean are matched
 * to the bit, not just to rounding. */
double pk_pairwise_sum(const double *a, long n)
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
    return pk_pairwise_sum(a, half) + pk_pairwise_sum(a + half, n - half);
}

/* sum over i of (a[i] - am) * (b[i] - bm): np.einsum("i,i->", a - am, b - bm) in the order of
 * NumPy's x86-64 einsum kernel (two lanes, four vectors a round taken last to first, the lanes
 * added at the end), so the x86-64 wheels' values are matched to the bit; elsewhere to rounding.
 * am = bm = 0 is a plain dot product (x - 0 is x). */
double pk_dot_centred(const double *a, double am, const double *b, double bm, long n)
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

/* ---- order statistics ------------------------------------------------------------------- */

/* NumPy's sort order: NaN after every number. */
static inline int before(double a, double b)
{
    return a < b || (isnan(b) && !isnan(a));
}

static inline void swap(double *a, long i, long j)
{
    double s = a[i];
    a[i] = a[j];
    a[j] = s;
}

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* Puts the k-th smallest of a[lo..hi) at a[k], no larger ones before it, no smaller ones after
 * (quickselect with a median-of-three pivot; a range that keeps splitting badly is sorted, so
 * the worst case stays n log n). Any correct selection puts the same value at k. The one
 * selection behind the medians (which refuse NaN first), the percentiles (likewise) and the
 * folded shape's bin medians (where NaN sorts last, as np.lexsort puts it). */
void pk_select_kth(double *a, long lo, long hi, long k)
{
    long end = hi - 1, budget = 2;
    for (long m = hi - lo; m > 1; m >>= 1)
        budget += 2;
    while (end > lo) {
        if (--budget < 0) {
            qsort(a + lo, (size_t)(end - lo + 1), sizeof(double), cmp_double);
            return;
        }
        long mid = lo + (end - lo) / 2;
        if (before(a[mid], a[lo]))
            swap(a, mid, lo);
        if (before(a[end], a[lo]))
            swap(a, end, lo);
        if (before(a[end], a[mid]))
            swap(a, end, mid);
        double pivot = a[mid];
        long i = lo, j = end;
        while (i <= j) {
            while (before(a[i], pivot))
                i++;
            while (before(pivot, a[j]))
                j--;
            if (i <= j) {
                swap(a, i, j);
                i++;
                j--;
            }
        }
        /* a[lo..j] <= pivot <= a[i..end], and what lies between equals the pivot */
        if (k <= j)
            end = j;
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
    pk_select_kth(work, 0, n, half);
    if (n % 2)
        return work[half];
    /* the largest of the lower half is the other middle value */
    double below = work[0];
    for (long i = 1; i < half; i++)
        if (work[i] > below)
            below = work[i];
    return (below + work[half]) / 2;
}

/* stats.percentiles on x[0..n) (n > 0), with work: n doubles of scratch. */
void pk_percentiles_with(const double *x, long n, const double *qs, int nq, double *out,
                         double *work)
{
    for (long i = 0; i < n; i++) {
        if (isnan(x[i])) {
            /* np.partition puts NaN last, and stats.percentiles answers NaN for every q */
            for (int q = 0; q < nq; q++)
                out[q] = NAN;
            return;
        }
    }
    memcpy(work, x, (size_t)n * sizeof(double));
    /* The order statistics each q needs, selected in increasing order: after the k-th is in
     * place, everything from k + 1 on is the larger rest, where the next one is looked for. */
    long done = -1; /* highest index in its sorted place, everything below it no larger */
    for (;;) {
        long next = -1;
        for (int q = 0; q < nq; q++) {
            double f = qs[q] / 100;
            double v = (double)n * f + (1 - f) - 1; /* NumPy's virtual index, alpha = beta = 1 */
            long lo, hi;
            if (v >= (double)(n - 1))
                lo = hi = n - 1;
            else if (v < 0)
                lo = hi = 0;
            else {
                lo = (long)floor(v);
                hi = lo + 1;
            }
            if (lo > done && (next < 0 || lo < next))
                next = lo;
            if (hi > done && (next < 0 || hi < next))
                next = hi;
        }
        if (next < 0)
            break;
        pk_select_kth(work, done + 1, n, next);
        done = next;
    }
    for (int q = 0; q < nq; q++) {
        double f = qs[q] / 100;
        double v = (double)n * f + (1 - f) - 1;
        long lo, hi;
        double g;
        if (v >= (double)(n - 1)) {
            lo = hi = n - 1;
            g = 0.0;
        } else if (v < 0) {
            lo = hi = 0;
            g = 0.0;
        } else {
            lo = (long)floor(v);
            hi = lo + 1;
            g = v - (double)lo;
        }
        double a = work[lo], b = work[hi];
        double diff = b - a;
        /* NumPy's _lerp: from the nearer end, so q = 100 gives the maximum exactly */
        out[q] = g < 0.5 ? a + diff * g : b - diff * (1 - g);
    }
}

int pk_percentiles(const double *x, int n, const double *qs, int nq, double *out)
{
    double *work = malloc((size_t)n * sizeof(double));
    if (work == NULL)
        return -1;
    pk_percentiles_with(x, n, qs, nq, out, work);
    free(work);
    return 0;
}

double pk_ramp_percentile(const double *t, const double *w, int n, double q)
{
    double *rates = malloc((size_t)(n - 1) * 2 * sizeof(double));
    if (rates == NULL)
        return NAN;
    for (int i = 0; i + 1 < n; i++)
        rates[i] = fabs(w[i + 1] - w[i]) / (t[i + 1] - t[i]);
    double out;
    pk_percentiles_with(rates, n - 1, &q, 1, &out, rates + (n - 1));
    free(rates);
    return out;
}

/* ---- detrend, window, solve ------------------------------------------------------------- */

void pk_detrend(const double *t, const double *w, int n, double *out)
{
    /* stats.detrend: tc = t - t.mean(); slope = <tc, w - wm> / <tc, tc>; out = w - wm - slope*tc.
     * tc is recomputed where it is used (no scratch: the header gives none). */
    double tm = pk_pairwise_sum(t, n) / n;
    double wm = pk_pairwise_sum(w, n) / n;
    double denom = pk_dot_centred(t, tm, t, tm, n);
    double slope = denom > 0 ? pk_dot_centred(t, tm, w, wm, n) / denom : 0.0;
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
