/*
 * rasd.power.analysis.analyze_series in C (declared in _kernel.h), with what it calls outside
 * the spectrum and the shared primitives: the repeat filter, the even grid, the folded shape,
 * the sine fit and the steady part; and pk_version, the contract's number.
 *
 * Why native: the daemon analyses every GPU's window every few seconds, and NumPy alone is a
 * third of its memory. Each step follows the NumPy code it replaces, on the same primitives
 * (_numeric.c, _interp.c), so the discrete decisions (a fit good enough, a stretch steady or
 * not) fall the same way. Build without floating-point contraction (-ffp-contract=off) and never
 * with -ffast-math: a fused multiply-add rounds once where NumPy rounds twice, and NaN tests
 * must stay IEEE.
 *
 * Plain C, no Python API: loaded with ctypes (rasd.power.kernel).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "_kernel.h"

/* rasd.power.metrics */
#define PEAK_PERCENTILE 99.0
#define TROUGH_PERCENTILE 1.0
#define RAMP_PERCENTILE 95.0
/* rasd.power.analysis */
#define FOLD_BINS 20
#define SINE_R2 0.97
#define MIN_FIT_R2 0.8
/* rasd.power.spectrum: above this many readings the sine fit is skipped (offline recordings) */
#define LARGE (1 << 16)
/* rasd.power.steady */
#define STEADY_SHARE 0.7

/* SeriesMetrics's fields, in their declared order (the out array of pk_analyze). */
enum {
    M_SAMPLES,
    M_DURATION,
    M_RATE,
    M_NYQUIST,
    M_BAND_LOW,
    M_BAND_HIGH,
    M_BEYOND_NYQUIST,
    M_OSC_HZ,
    M_OSC_AMPLITUDE,
    M_SWING,
    M_PEAK,
    M_TROUGH,
    M_MEAN,
    M_RAMP_UP,
    M_RAMP_DOWN,
    M_ENERGY,
    M_OSC_BAND,
    M_BAND_OSC_HZ,
    M_STEADY_PEAK,
    M_STEADY_TROUGH,
    M_STEADY_RATIO,
    M_STEADY_ENERGY,
    M_COUNT
};
_Static_assert(M_COUNT == PK_METRICS, "PK_METRICS is SeriesMetrics's field count");

int pk_version(void)
{
    return 1;
}

/* ---- analyze_series --------------------------------------------------------------------- */

/* analysis._folded_shape: each reading replaced by the median of the readings in its phase bin,
 * interpolated circularly between bin centres. 1: shape written; 0: None (too few bins filled,
 * or the folded wave explains less than MIN_FIT_R2 of the variance); -1: out of memory. */
static int folded_shape(const double *t, const double *w, long n, double freq, double *shape)
{
    double rate = (double)(n - 1) / (t[n - 1] - t[0]); /* achieved_rate */
    /* One bin per update interval at low frequencies keeps square edges one sample sharp;
     * Python's round() halves to even, as rint does in the default rounding mode. */
    double per_cycle = rint(rate / freq);
    long bins = n / 6;
    if (per_cycle < (double)bins)
        bins = (long)per_cycle;
    if (bins < FOLD_BINS)
        bins = FOLD_BINS;
    int rc = -1;
    double *phase = malloc((size_t)n * sizeof(double));
    double *grouped = malloc((size_t)n * sizeof(double));
    long *idx = malloc((size_t)n * sizeof(long));
    long *counts = calloc((size_t)bins + 1, sizeof(long));
    double *xp = malloc((size_t)(bins + 2) * sizeof(double));
    double *fp = malloc((size_t)(bins + 2) * sizeof(double));
    if (!phase || !grouped || !idx || !counts || !xp || !fp)
        goto out;
    for (long i = 0; i < n; i++) {
        phase[i] = fmod((t[i] - t[0]) * freq, 1.0) * (double)bins; /* np.mod of a non-negative */
        long b = (long)phase[i];
        idx[i] = b < bins - 1 ? b : bins - 1;
        counts[idx[i] + 1]++;
    }
    long filled = 0;
    for (long b = 1; b <= bins; b++)
        filled += counts[b] > 0;
    rc = 0;
    if (filled < 4)
        goto out;
    /* Group the readings by bin (counts becomes each bin's start), keeping their order. */
    for (long b = 1; b <= bins; b++)
        counts[b] += counts[b - 1];
    for (long i = 0; i < n; i++)
        grouped[counts[idx[i]]++] = w[i];
    /* counts[b] is now bin b's end, counts[b - 1] its start (counts[-1] standing for 0). */
    long m = 1;
    for (long b = 0; b < bins; b++) {
        long a = b ? counts[b - 1] : 0, k = counts[b] - a;
        if (k == 0)
            continue;
        /* The middle two of the bin's sorted values (the same one for an odd count), as the
         * lexsort of the Python does; np.median's halved sum for the LARGE branch is the same. */
        long lo = a + (k - 1) / 2, hi = a + k / 2;
        pk_select_kth(grouped, a, a + k, lo);
        if (hi != lo)
            pk_select_kth(grouped, lo + 1, a + k, hi);
        xp[m] = (double)b + 0.5; /* the bin's centre */
        fp[m] = 0.5 * (grouped[lo] + grouped[hi]);
        m++;
    }
    /* np.interp(..., period=bins): the centres already lie in [0, bins) in order; one copy of
     * the last before the first and of the first after the last closes the circle. */
    xp[0] = xp[m - 1] - (double)bins;
    fp[0] = fp[m - 1];
    xp[m] = xp[1] + (double)bins;
    fp[m] = fp[1];
    long guess = 0;
    for (long i = 0; i < n; i++)
        shape[i] = pk_interp_at(fmod(phase[i], (double)bins), xp, fp, m + 1, &guess);
    /* The variance the folded wave leaves, against the whole (grouped: free scratch now). */
    double mean = pk_pairwise_sum(w, n) / (double)n;
    for (long i = 0; i < n; i++)
        grouped[i] = (w[i] - mean) * (w[i] - mean);
    double total = pk_pairwise_sum(grouped, n);
    for (long i = 0; i < n; i++)
        grouped[i] = (w[i] - shape[i]) * (w[i] - shape[i]);
    double left = pk_pairwise_sum(grouped, n);
    rc = !(total <= 0 || 1 - left / total < MIN_FIT_R2);
out:
    free(phase);
    free(grouped);
    free(idx);
    free(counts);
    free(xp);
    free(fp);
    return rc;
}

/* spectrum.sine_fit: amplitude (W) and share of variance explained of a sinusoid at freq with a
 * level and a slope, fitted at the readings' own times (the 4x4 normal equations). 0: done
 * (both 0 where the system is singular); -1: out of memory. */
static int sine_fit(const double *t, const double *w, long n, double freq, double *amp,
                    double *r2)
{
    double *cols = malloc((size_t)n * 4 * sizeof(double));
    if (cols == NULL)
        return -1;
    double *c = cols, *s = cols + n, *rel = cols + 2 * n, *centred = cols + 3 * n;
    double omega = 2 * M_PI * freq; /* Python's 2 * math.pi * freq, then times each time */
    for (long i = 0; i < n; i++) {
        rel[i] = t[i] - t[0];
        double ph = omega * rel[i];
        c[i] = cos(ph);
        s[i] = sin(ph);
    }
    double rel_mean = pk_pairwise_sum(rel, n) / (double)n;
    /* Columns cos, sin, 1, rel - mean; their Gram matrix and products with w. */
    double g[16] = {0}, b[4] = {0};
    for (long i = 0; i < n; i++) {
        double v[4] = {c[i], s[i], 1.0, rel[i] - rel_mean};
        for (int r = 0; r < 4; r++) {
            for (int k = 0; k < 4; k++)
                g[r * 4 + k] += v[r] * v[k];
            b[r] += v[r] * w[i];
        }
    }
    *amp = 0.0;
    *r2 = 0.0;
    if (pk_solve(4, g, b) == 0) {
        double left = 0.0;
        for (long i = 0; i < n; i++) {
            double fit = b[0] * c[i] + b[1] * s[i] + b[2] * 1.0 + b[3] * (rel[i] - rel_mean);
            double resid = w[i] - fit;
            left += resid * resid;
        }
        pk_detrend(rel, w, (int)n, centred);
        double total = 0.0;
        for (long i = 0; i < n; i++)
            total += centred[i] * centred[i];
        *r2 = total > 0 ? 1.0 - left / total : 0.0;
        *amp = hypot(b[0], b[1]);
    }
    free(cols);
    return 0;
}

/* steady.steady_mask: 1 where an even-grid series (step seconds apart) is at its steady level.
 * work: n + 1 doubles. 0: done; -1: out of memory. */
static int steady_mask(const double *w, long n, double step, double band_low, unsigned char *mask,
                       double *work)
{
    memset(mask, 1, (size_t)n);
    /* Python's int(round(...)): halves to even, as rint does in the default rounding mode. */
    double width_d = rint(1.0 / (band_low * step));
    if (width_d < 1)
        width_d = 1;
    if ((double)n < 2 * width_d)
        return 0; /* shorter than two slow periods: nothing to tell apart */
    long width = (long)width_d, half = width / 2;
    /* The centred moving average from running sums (np.cumsum after a leading 0). */
    double *c = work, *level = malloc((size_t)n * 2 * sizeof(double));
    long *lows = malloc((size_t)(n + 1) * sizeof(long));
    if (level == NULL || lows == NULL) {
        free(level);
        free(lows);
        return -1;
    }
    c[0] = 0.0;
    c[1] = w[0];
    for (long i = 1; i < n; i++)
        c[i + 1] = c[i] + w[i];
    for (long i = 0; i < n; i++) {
        long lo = i - half > 0 ? i - half : 0;
        long hi = i - half + width < n ? i - half + width : n;
        level[i] = (c[hi] - c[lo]) / (double)(hi - lo);
    }
    double typical = pk_median(level, (int)n, level + n);
    if (typical <= 0) {
        free(level);
        free(lows);
        return 0;
    }
    /* Low stretches, widened by half a period either side (the average there still includes
     * them): running counts of low points over each reading's reach. */
    double cut = STEADY_SHARE * typical;
    long reach = width / 2, any = 0;
    lows[0] = 0;
    for (long i = 0; i < n; i++) {
        int low = level[i] < cut;
        any |= low;
        lows[i + 1] = lows[i] + low;
    }
    free(level);
    if (any) {
        for (long i = 0; i < n; i++) {
            long hi = i + reach + 1 < n ? i + reach + 1 : n;
            long lo = i - reach > 0 ? i - reach : 0;
            mask[i] = lows[hi] - lows[lo] == 0;
        }
    }
    free(lows);
    return 0;
}

int pk_analyze(const double *t_in, const double *w_in, int n_in, double low, double high,
               double min_amplitude, int uniform, double *out)
{
    if (n_in < PK_MIN_SAMPLES)
        return 0; /* analysable: too few updates (repeats only make fewer) */
    int rc = -1;
    /* One block of scratch: t, w (repeats dropped), the grid (t, w), the shape, 2n + 1 of
     * general scratch, and the steady mask. */
    long n = n_in;
    double *mem = malloc((size_t)(7 * n + 1) * sizeof(double));
    unsigned char *mask = malloc((size_t)n);
    if (mem == NULL || mask == NULL)
        goto out;
    double *t = mem, *w = mem + n, *grid_t = mem + 2 * n, *grid_w = mem + 3 * n;
    double *shape = mem + 4 * n, *work = mem + 5 * n; /* work: 2n + 1 */

    /* _dedup: a reading seen twice is one update (a time not after the one before is dropped,
     * which for sorted times drops exactly the repeats). */
    long m = 0;
    for (long i = 0; i < n; i++) {
        if (i == 0 || t_in[i] - t_in[i - 1] > 0) {
            t[m] = t_in[i];
            w[m] = w_in[i];
            m++;
        }
    }
    n = m;
    rc = 0;
    if (!(n >= PK_MIN_SAMPLES && t[n - 1] > t[0]))
        goto out; /* analysable */
    double duration = t[n - 1] - t[0];
    double rate = (double)(n - 1) / duration; /* achieved_rate */
    double nyquist = rate / 2.0;
    /* An even grid at the achieved rate: NVML's updates jitter around 100 ms, the FFT wants even
     * steps (the node sum is on one already). */
    double step = duration / (double)(n - 1);
    if (uniform) {
        memcpy(grid_t, t, (size_t)n * sizeof(double));
        memcpy(grid_w, w, (size_t)n * sizeof(double));
    } else {
        pk_fill_grid(t[0], step, (int)n, grid_t);
        pk_interp(grid_t, n, t, w, n, grid_w);
    }
    pk_oscillation osc;
    rc = -1;
    if (pk_find_oscillation(grid_t, grid_w, (int)n, step, low, high, nyquist, min_amplitude,
                            &osc) != 0)
        goto out;
    double freq = osc.hz, amp = osc.amplitude, energy = osc.energy_ratio;
    int found = !isnan(freq);
    /* Noise inflates percentiles: where one periodic wave explains the window, the swing is
     * measured on its folded shape; ramps stay on the raw readings. */
    const double *swing_of = w;
    if (found) {
        int folded = folded_shape(t, w, n, freq, shape);
        if (folded < 0)
            goto out;
        if (folded)
            swing_of = shape;
    }
    const double edges[2] = {PEAK_PERCENTILE, TROUGH_PERCENTILE};
    double pt[2];
    pk_percentiles_with(swing_of, n, edges, 2, pt, work);
    double peak = pt[0], trough = pt[1];
    if (found && amp > 0 && n <= LARGE) {
        /* A clean sinusoid may never be read at its crest: its fitted amplitude, from all phases
         * at once, is the better measure, for a wave a sinusoid explains. */
        double fit_amp, r2;
        if (sine_fit(t, w, n, freq, &fit_amp, &r2) != 0)
            goto out;
        if (r2 >= SINE_R2 && 2 * fit_amp > peak - trough) {
            double extra = fit_amp - 0.5 * (peak - trough);
            peak = peak + extra;
            trough = trough - extra;
        }
    }
    if (steady_mask(grid_w, n, step, low, mask, work) != 0)
        goto out;
    long steady_count = 0;
    for (long i = 0; i < n; i++)
        steady_count += mask[i];
    double steady_ratio = (double)steady_count / (double)n; /* steady.mean() */
    double steady_peak = peak, steady_trough = trough, steady_energy = energy;
    if (steady_ratio < 1.0 && steady_count > 0) {
        /* The band's share of the energy with the unsteady stretches held at the steady mean. */
        double *held = work;
        long k = 0;
        for (long i = 0; i < n; i++)
            if (mask[i])
                held[k++] = grid_w[i];
        double steady_mean = pk_pairwise_sum(held, k) / (double)k;
        for (long i = 0; i < n; i++)
            held[i] = mask[i] ? grid_w[i] : steady_mean;
        steady_energy = pk_band_energy_ratio(held, (int)n, step, low, high, nyquist);
        if (steady_energy == -1.0)
            goto out;
        /* The readings where the grid is steady (np.interp of the mask at >= 0.5). */
        double *as_float = work, *at_reading = work + n;
        for (long i = 0; i < n; i++)
            as_float[i] = mask[i] ? 1.0 : 0.0;
        pk_interp(t, n, grid_t, as_float, n, at_reading);
        double *picked = work; /* as_float is done with once at_reading is known */
        k = 0;
        for (long i = 0; i < n; i++)
            if (at_reading[i] >= 0.5)
                picked[k++] = swing_of[i];
        if (k >= PK_MIN_SAMPLES) {
            pk_percentiles_with(picked, k, edges, 2, pt, work + n);
            steady_peak = pt[0];
            steady_trough = pt[1];
        }
    }
    /* Ramps: the 95th percentile of the rising and of the falling rates, 0 where there are none. */
    double *ups = work, *downs = work + n, *scratch = grid_t; /* the grid's times are done with */
    long nu = 0, nd = 0;
    for (long i = 0; i + 1 < n; i++) {
        double slope = (w[i + 1] - w[i]) / (t[i + 1] - t[i]);
        if (slope > 0)
            ups[nu++] = slope;
        else if (slope < 0)
            downs[nd++] = -slope;
    }
    const double ramp_q = RAMP_PERCENTILE;
    double ramp_up = 0.0, ramp_down = 0.0;
    if (nu)
        pk_percentiles_with(ups, nu, &ramp_q, 1, &ramp_up, scratch);
    if (nd)
        pk_percentiles_with(downs, nd, &ramp_q, 1, &ramp_down, scratch);

    out[M_SAMPLES] = (double)n;
    out[M_DURATION] = duration;
    out[M_RATE] = rate;
    out[M_NYQUIST] = nyquist;
    out[M_BAND_LOW] = low;
    out[M_BAND_HIGH] = high;
    out[M_BEYOND_NYQUIST] = high > nyquist ? 1.0 : 0.0;
    out[M_OSC_HZ] = found ? freq : NAN;
    out[M_OSC_AMPLITUDE] = amp;
    out[M_SWING] = peak - trough;
    out[M_PEAK] = peak;
    out[M_TROUGH] = trough;
    out[M_MEAN] = pk_pairwise_sum(w, n) / (double)n;
    out[M_RAMP_UP] = ramp_up;
    out[M_RAMP_DOWN] = ramp_down;
    out[M_ENERGY] = energy;
    out[M_OSC_BAND] = !found ? 0.0 : freq < low ? 1.0 : freq > high ? 3.0 : 2.0;
    out[M_BAND_OSC_HZ] = osc.in_band_hz;
    out[M_STEADY_PEAK] = steady_peak;
    out[M_STEADY_TROUGH] = steady_trough;
    out[M_STEADY_RATIO] = steady_ratio;
    out[M_STEADY_ENERGY] = steady_energy;
    rc = 1;
out:
    free(mem);
    free(mask);
    return rc;
}
