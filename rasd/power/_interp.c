/*
 * Series onto an even grid (declared in _kernel.h): np.interp, expression for expression as
 * NumPy's compiled interp (so interpolated watts are NumPy's to the bit), and the grid of
 * rasd.power.analysis.node_sum with the node's interpolated total, which the daemon computes
 * every tick.
 *
 * Build without floating-point contraction (-ffp-contract=off) and never with -ffast-math: a
 * fused multiply-add rounds once where NumPy rounds twice, and NaN tests must stay IEEE.
 *
 * Plain C, no Python API: loaded with ctypes (rasd.power.kernel).
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "_kernel.h"

/* The last j with xp[j] <= x (-1: x below xp[0]; n: x above xp[n-1]), the index NumPy's
 * binary_search_with_guess returns whatever its guess. guess: where the previous x landed
 * (sorted x mostly land at or just after it). */
static long locate(double x, const double *xp, long n, long guess)
{
    if (x > xp[n - 1])
        return n;
    if (x < xp[0])
        return -1;
    long lo = 0, hi = n; /* xp[lo] <= x, and xp[hi] > x where hi < n */
    if (guess >= 0 && guess < n && xp[guess] <= x) {
        lo = guess;
        if (guess + 1 < n && x < xp[guess + 1])
            return guess;
        if (guess + 2 < n && x < xp[guess + 2])
            return guess + 1;
    }
    while (hi - lo > 1) {
        long mid = lo + (hi - lo) / 2;
        if (x >= xp[mid])
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* np.interp(x, xp, fp) at one point, held at fp[0] and fp[n-1] outside xp: NumPy's compiled
 * interp expression for expression (n > 0). */
double pk_interp_at(double x, const double *xp, const double *fp, long n, long *guess)
{
    if (n == 1)
        return fp[0]; /* NumPy's one-point case answers fp[0] for every x, NaN included */
    if (isnan(x))
        return x;
    long j = locate(x, xp, n, *guess);
    *guess = j;
    if (j == -1)
        return fp[0];
    if (j == n)
        return fp[n - 1];
    if (j == n - 1 || xp[j] == x)
        return fp[j];
    double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    double r = slope * (x - xp[j]) + fp[j];
    if (isnan(r)) {
        /* NumPy's retry from the other end (an infinite slope times a zero offset) */
        r = slope * (x - xp[j + 1]) + fp[j + 1];
        if (isnan(r) && fp[j] == fp[j + 1])
            r = fp[j];
    }
    return r;
}

void pk_interp(const double *x, long nx, const double *xp, const double *fp, long n,
               double *out)
{
    long guess = 0;
    for (long i = 0; i < nx; i++)
        out[i] = pk_interp_at(x[i], xp, fp, n, &guess);
}

void pk_fill_grid(double start, double step, int count, double *out)
{
    for (int j = 0; j < count; j++)
        out[j] = start + step * (double)j;
}

void pk_interp_sum(const double *points, int count, int k, const double *const *t,
                   const double *const *w, const int *n, double *out)
{
    for (int j = 0; j < count; j++)
        out[j] = 0.0; /* node_sum's np.zeros, added to GPU by GPU */
    for (int i = 0; i < k; i++) {
        long guess = 0;
        for (int j = 0; j < count; j++)
            out[j] += pk_interp_at(points[j], t[i], w[i], n[i], &guess);
    }
}

int pk_node_grid(int k, const double *const *t, const double *const *w, const int *n,
                 double *grid)
{
    (void)w; /* the grid depends on the times only */
    if (k <= 0)
        return 0;
    int longest = 0;
    for (int i = 0; i < k; i++) {
        if (n[i] < 2)
            return 0; /* no update interval (node_sum's caller never passes such a GPU) */
        if (n[i] > longest)
            longest = n[i];
    }
    double *diffs = malloc((size_t)(2 * (longest - 1) + 2 * k) * sizeof(double));
    if (diffs == NULL)
        return -1;
    double *steps = diffs + (longest - 1), *work = steps + k; /* work: the longer of the two */
    double start = t[0][0], end = t[0][n[0] - 1];
    for (int i = 0; i < k; i++) {
        const double *ti = t[i];
        if (ti[0] > start)
            start = ti[0];
        if (ti[n[i] - 1] < end)
            end = ti[n[i] - 1];
        for (int j = 0; j + 1 < n[i]; j++)
            diffs[j] = ti[j + 1] - ti[j];
        steps[i] = pk_median(diffs, n[i] - 1, work); /* the median update interval per GPU */
    }
    double step = pk_median(steps, k, work);
    free(diffs);
    /* node_sum: no grid without a positive step and MIN_SAMPLES points over the common span */
    if (!(step > 0) || end - start < step * (PK_MIN_SAMPLES - 1))
        return 0;
    double count = floor((end - start) / step) + 1;
    if (!(count <= INT_MAX))
        return -1; /* no window holds a grid this long; it could not be allocated either */
    grid[0] = start;
    grid[1] = step;
    return (int)count;
}
