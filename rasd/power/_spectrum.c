/*
 * rasd.power.spectrum in C (declared in _kernel.h): find_oscillation (the strongest periodic
 * rhythm of an even-grid window, and the strongest inside the band) and band_energy_ratio.
 *
 * Each function follows the NumPy code it replaces step for step, so the discrete outcomes (an
 * oscillation found or not, which peak wins) are the NumPy code's and the values agree to
 * rounding (the FFT's and the fits' LU do not round as pocketfft and LAPACK do). Build without
 * floating-point contraction (-ffp-contract=off) and never with -ffast-math.
 *
 * Plain C, no Python API: loaded with ctypes (rasd.power.kernel).
 */
#include <math.h>
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

/* The energy_ratio of spectrum.find_oscillation and band_energy_ratio from the power spectrum:
 * power[in band].sum() / power[1:].sum(), both pairwise sums as NumPy's (the band's bins are
 * one run, np.fft.rfftfreq's frequencies rising with k). */
static double energy_share(const double *power, long n, double step, double low, double high,
                           double nyquist)
{
    if (low >= nyquist)
        return NAN; /* the whole band is beyond what this rate can see */
    long bins = n / 2 + 1;
    double total = pk_pairwise_sum(power + 1, bins - 1);
    if (total <= 0)
        return 0.0;
    double visible_high = nyquist < high ? nyquist : high; /* Python's min(high, nyquist) */
    double val = 1.0 / ((double)n * step);                  /* np.fft.rfftfreq's spacing */
    long first = -1, count = 0;
    for (long k = 0; k < bins; k++) {
        double f = (double)k * val;
        if (f >= low && f <= visible_high) {
            if (first < 0)
                first = k;
            count++;
        }
    }
    double inside = first < 0 ? 0.0 : pk_pairwise_sum(power + first, count);
    return inside / total;
}

/* spectrum._fundamental: the lowest strong subharmonic bin of peak k (k itself when none). */
static long fundamental(const double *mag, long size, long k, double threshold, double k_min)
{
    long best = k;
    for (int h = 2; h <= MAX_HARMONIC; h++) {
        double centre = (double)k / h;
        if (centre < k_min)
            break;
        /* the subharmonic's bin is known to about one unpadded bin (ZERO_PAD padded ones) / h */
        long spread = (long)ceil((double)ZERO_PAD / h) + 1;
        if (spread < 2)
            spread = 2;
        long lo = (long)centre - spread, hi = (long)centre + spread + 1;
        if (lo < 1)
            lo = 1;
        if (hi > size - 2)
            hi = size - 2;
        if (hi <= lo)
            continue;
        long j = lo; /* np.argmax: the first largest, or the first NaN */
        for (long i = lo; i < hi; i++) {
            if (isnan(mag[i])) {
                j = i;
                break;
            }
            if (mag[i] > mag[j])
                j = i;
        }
        int local_max = mag[j] >= mag[j - 1] && mag[j] >= mag[j + 1];
        if (local_max && mag[j] >= threshold && mag[j] >= SUBHARMONIC_SHARE * mag[k])
            best = j;
    }
    return best;
}

/* Python's max(v, 1e-300): v unless 1e-300 is larger (so NaN stays NaN). */
static double log_floor(double v)
{
    return log(1e-300 > v ? 1e-300 : v);
}

/* spectrum._interpolate: fractional bin of the peak at k (parabola through log magnitudes). */
static double interpolate(const double *mag, long size, long k)
{
    if (!(0 < k && k < size - 1))
        return (double)k;
    double a = log_floor(mag[k - 1]), b = log_floor(mag[k]), c = log_floor(mag[k + 1]);
    double denom = a - 2 * b + c;
    double side = c > a ? c : a; /* Python's max(a, c) */
    /* only a crest has its vertex within half a bin of k (see spectrum._interpolate) */
    if (denom >= 0 || b < side)
        return (double)k;
    return (double)k + 0.5 * (a - c) / denom;
}

/* What the sinusoid fits share: the series, its time columns and scratch (all n long). */
typedef struct {
    const double *rel; /* t - t[0] */
    const double *x;   /* the detrended series */
    long n;
    double *cosv, *sinv, *ones, *centred; /* the fit's columns */
} fit_space;

/* cos and sin of 2 pi freq (t - t[0]) into the columns (the phase as spectrum computes it). */
static void phase_columns(fit_space *fs, double freq)
{
    double omega = 2 * M_PI * freq;
    for (long i = 0; i < fs->n; i++) {
        double ph = omega * fs->rel[i];
        fs->cosv[i] = cos(ph);
        fs->sinv[i] = sin(ph);
    }
}

/* hypot of the sinusoid's coefficients from the m x m normal equations over [a, b) (columns
 * cos, sin, 1 and, for m = 4, the centred time); 0 where they are singular, as spectrum's
 * fits answer np.linalg.LinAlgError. */
static double fit_span(const fit_space *fs, int m, long a, long b)
{
    const double *cols[4] = {fs->cosv + a, fs->sinv + a, fs->ones + a, fs->centred + a};
    double gram[16], rhs[4];
    long len = b - a;
    for (int i = 0; i < m; i++) {
        for (int k = 0; k < m; k++)
            gram[i * m + k] = pk_dot_centred(cols[i], 0.0, cols[k], 0.0, len);
        rhs[i] = pk_dot_centred(cols[i], 0.0, fs->x + a, 0.0, len);
    }
    if (pk_solve(m, gram, rhs) < 0)
        return 0.0;
    return hypot(rhs[0], rhs[1]);
}

/* spectrum._periodic (with _amplitudes): the wave at freq shows in each third of the window
 * with at least THIRDS_SHARE of the whole window's amplitude (each span its own level and
 * slope), so a single pulse or step is not taken for an oscillation. The phase columns must be
 * freq's (phase_columns). */
static int periodic(const fit_space *fs)
{
    long n = fs->n, third = n / 3;
    if (third < 4)
        return 1;
    double whole = fit_span(fs, 4, 0, n);
    double parts[3] = {fit_span(fs, 4, 0, third), fit_span(fs, 4, third, 2 * third),
                       fit_span(fs, 4, 2 * third, n)};
    double least = parts[0]; /* Python's min() */
    for (int i = 1; i < 3; i++)
        if (parts[i] < least)
            least = parts[i];
    return whole > 0 && least >= THIRDS_SHARE * whole;
}

/* One traced peak's outcome (spectrum.find_oscillation's `tried`): keyed by its fundamental's
 * bin, so a bin reached twice is fitted once. */
typedef struct {
    long bin;
    int some; /* 0: None */
    double hz, watts;
} rhythm_entry;

/* Everything find_oscillation's nested functions see. */
typedef struct {
    const double *mag;
    long size;
    double threshold, k_min, df, min_amplitude;
    fit_space *fs;
    rhythm_entry tried[3 * CANDIDATES]; /* at most CANDIDATES + 2 * CANDIDATES lookups */
    int ntried;
    /* own(): the slow rhythm found (found_some 0: none) */
    int found_some;
    double found_hz, base, tolerance;
} search;

/* rhythm(k, trace): the (Hz, W) of the periodic rhythm whose harmonic peak k is (trace), or
 * of k itself; NULL for None. */
static const rhythm_entry *rhythm(search *s, long k, int trace)
{
    long k0 = trace ? fundamental(s->mag, s->size, k, s->threshold, s->k_min) : k;
    for (int i = 0; i < s->ntried; i++)
        if (s->tried[i].bin == k0)
            return s->tried[i].some ? &s->tried[i] : NULL;
    rhythm_entry *e = &s->tried[s->ntried++];
    e->bin = k0;
    e->hz = interpolate(s->mag, s->size, k0) * s->df;
    phase_columns(s->fs, e->hz);
    e->watts = periodic(s->fs) ? fit_span(s->fs, 3, 0, s->fs->n) : 0.0;
    e->some = e->watts >= s->min_amplitude && e->watts > 0;
    return e->some ? e : NULL;
}

/* mag at the bin nearest freq (Python's round: half to even, as rint does by default). */
static double mag_at(const search *s, double freq)
{
    double r = rint(freq / s->df);
    long j = r < 0 ? 0 : (r > (double)(s->size - 1) ? s->size - 1 : (long)r);
    return s->mag[j];
}

/* own(): not a harmonic of the slow rhythm found, unless stronger than any harmonic of a
 * pulse train can be (2/order of the fundamental's peak): see spectrum.find_oscillation. */
static int own(const search *s, double freq, double strength)
{
    if (!s->found_some)
        return 1;
    double order = rint(freq / s->found_hz);
    if (order < 1)
        order = 1;
    int near = fabs(freq / s->found_hz - order) * s->found_hz <= s->tolerance;
    return !near || strength > 2.0 / order * s->base;
}

/* inside_rhythm(k): traced down, or else k alone, a rhythm inside the band that is its own. */
static const rhythm_entry *inside_rhythm(search *s, long k, double low, double high)
{
    const rhythm_entry *r[2];
    r[0] = rhythm(s, k, 1);
    r[1] = rhythm(s, k, 0);
    for (int i = 0; i < 2; i++)
        if (r[i] && low <= r[i]->hz && r[i]->hz <= high && own(s, r[i]->hz, mag_at(s, r[i]->hz)))
            return r[i];
    return NULL;
}

/* The ranking of peaks, strongest first, into bins[0..count) (tmp: count more). NumPy's
 * np.argsort(mag[peaks])[::-1] leaves equal magnitudes in no promised order (its default sort is
 * not stable); here they come as the reverse of a stable ascending sort would give them: the
 * higher bin first. That is a stable descending merge sort of the peaks in falling bin order. */
static void rank_peaks(const double *mag, long *bins, long *tmp, long count)
{
    for (long i = 0, j = count - 1; i < j; i++, j--) { /* peaks come in rising bin order */
        long s = bins[i];
        bins[i] = bins[j];
        bins[j] = s;
    }
    for (long width = 1; width < count; width *= 2) {
        for (long lo = 0; lo < count; lo += 2 * width) {
            long mid = lo + width < count ? lo + width : count;
            long hi = lo + 2 * width < count ? lo + 2 * width : count;
            long i = lo, j = mid, o = lo;
            while (i < mid && j < hi) /* the right run goes first only when strictly stronger */
                tmp[o++] = mag[bins[j]] > mag[bins[i]] ? bins[j++] : bins[i++];
            while (i < mid)
                tmp[o++] = bins[i++];
            while (j < hi)
                tmp[o++] = bins[j++];
        }
        memcpy(bins, tmp, sizeof(long) * (size_t)count);
    }
}

int pk_find_oscillation(const double *t, const double *w, int n, double step, double low,
                        double high, double nyquist, double min_amplitude, pk_oscillation *out)
{
    out->hz = NAN;
    out->amplitude = 0.0;
    out->energy_ratio = NAN;
    out->in_band_hz = NAN;
    if (n < 1)
        return 0;
    long bins = (long)n / 2 + 1;
    /* the padded length: ZERO_PAD times finer, up to MAX_PADDED; a power of two */
    long padded = (long)n * ZERO_PAD <= MAX_PADDED ? (long)n * ZERO_PAD : (long)n;
    long nfft = pk_pow2_at_least(padded);
    long size = nfft / 2 + 1;
    /* rel, x, xw, and the fit's four columns: 7n; power and the floor's scratch: 2 bins;
     * mag: size; peaks and the ranking's scratch: 2 size longs */
    double *space = malloc(sizeof(double) * ((size_t)n * 7 + (size_t)bins * 2 + (size_t)size));
    long *peaks = malloc(sizeof(long) * (size_t)size * 2);
    if (!space || !peaks) {
        free(space);
        free(peaks);
        return -1;
    }
    double *rel = space, *x = rel + n, *xw = x + n;
    fit_space fs = {rel, x, n, xw + n, xw + 2 * n, xw + 3 * n, xw + 4 * n};
    double *power = xw + 5 * n, *floor_work = power + bins, *mag = floor_work + bins;
    long *ranked = peaks, *rank_tmp = peaks + size;
    int rc = -1;

    for (int i = 0; i < n; i++)
        rel[i] = t[i] - t[0];
    /* a linear detrend keeps a slow ramp (a job starting) from leaking into the low bins */
    pk_detrend(rel, w, n, x);
    pk_hann(n, xw);
    for (int i = 0; i < n; i++)
        xw[i] = x[i] * xw[i];
    if (pk_power_spectrum(xw, n, power) < 0)
        goto done;
    out->energy_ratio = energy_share(power, n, step, low, high, nyquist);
    rc = 0;

    /* Search from three cycles per window (below the band too) up to just below Nyquist, on a
     * zero-padded spectrum with parabolic interpolation. (One reading spans no time: nothing
     * to search, where the Python divides by zero.) */
    if (n < 2)
        goto done;
    double duration = step * (double)(n - 1);
    double f_min = MIN_CYCLES / duration, f_max = nyquist * 0.98;
    if (f_min >= f_max)
        goto done;
    if (pk_rfft_abs_pow2(xw, n, nfft, mag) < 0) {
        rc = -1;
        goto done;
    }
    double df = 1.0 / ((double)nfft * step);
    long sel_first = -1, sel_count = 0; /* the searched bins are one run (k * df rises with k) */
    for (long k = 0; k < size; k++) {
        double f = (double)k * df;
        if (f >= f_min && f <= f_max) {
            if (sel_first < 0)
                sel_first = k;
            sel_count++;
        }
    }
    if (sel_count < 3)
        goto done;
    /* noise floor from the unpadded bins of the same range (independent bins, fair median) */
    double val = 1.0 / ((double)n * step);
    long raw_count = 0;
    for (long k = 0; k < bins; k++) {
        double f = (double)k * val;
        if (f >= f_min && f <= f_max)
            power[raw_count++] = power[k]; /* power is not needed any more: gather in place */
    }
    double floor = raw_count > 0 ? pk_median(power, (int)raw_count, floor_work) : 0.0;
    double threshold = floor > 0 ? sqrt(DETECTION_RATIO * floor) : 0.0;
    long npeaks = 0;
    const double *seg = mag + sel_first;
    for (long i = 0; i < sel_count; i++) {
        int is_peak = (i == 0 || seg[i] >= seg[i - 1]) && (i == sel_count - 1 || seg[i] > seg[i + 1]);
        if (is_peak && seg[i] >= threshold)
            ranked[npeaks++] = sel_first + i;
    }
    if (npeaks == 0)
        goto done;
    rank_peaks(mag, ranked, rank_tmp, npeaks);

    search s = {.mag = mag, .size = size, .threshold = threshold, .k_min = f_min / df,
                .df = df, .min_amplitude = min_amplitude, .fs = &fs, .ntried = 0};
    for (long i = 0; i < n; i++)
        fs.ones[i] = 1.0;
    /* a level and a slope span the same fits whatever the slope's origin: one centred time
     * column serves every span (spectrum._amplitudes) */
    double rel_mean = pk_pairwise_sum(rel, n) / n;
    for (long i = 0; i < n; i++)
        fs.centred[i] = rel[i] - rel_mean;

    const rhythm_entry *found = NULL;
    for (long i = 0; i < npeaks && i < CANDIDATES && !found; i++)
        found = rhythm(&s, ranked[i], 1);
    if (found) {
        out->hz = found->hz;
        out->amplitude = found->watts;
    }
    if (found && low <= found->hz && found->hz <= high) {
        out->in_band_hz = found->hz;
        goto done;
    }
    /* the strongest periodic rhythm inside the band: a checkpoint's slow cycle may dominate the
     * window while the training steps still swing inside the band */
    s.found_some = found != NULL;
    s.found_hz = found ? found->hz : 0.0;
    s.base = found ? mag_at(&s, found->hz) : 0.0;
    /* within four unpadded bins: a strong harmonic's window sidelobes sit two or three bins
     * either side of it and must not pass for a rhythm of their own */
    s.tolerance = 4.0 / ((double)n * step);
    long ninside = 0;
    for (long i = 0; i < npeaks; i++) { /* in place: the list only shrinks */
        long k = ranked[i];
        double f = (double)k * df;
        if (f >= low && f <= high && own(&s, f, mag[k]))
            ranked[ninside++] = k;
    }
    for (long i = 0; i < ninside && i < CANDIDATES; i++) {
        const rhythm_entry *hit = inside_rhythm(&s, ranked[i], low, high);
        if (hit) {
            out->in_band_hz = hit->hz;
            break;
        }
    }
done:
    free(space);
    free(peaks);
    return rc;
}

double pk_band_energy_ratio(const double *w, int n, double step, double low, double high,
                            double nyquist)
{
    if (low >= nyquist)
        return NAN;
    if (n < 1)
        return 0.0; /* no energy at all */
    long bins = (long)n / 2 + 1;
    double *space = malloc(sizeof(double) * ((size_t)n * 3 + (size_t)bins));
    if (!space)
        return -1.0;
    double *t = space, *x = t + n, *win = x + n, *power = win + n;
    for (int i = 0; i < n; i++)
        t[i] = (double)i * step; /* np.arange(n) * step */
    pk_detrend(t, w, n, x);
    pk_hann(n, win);
    for (int i = 0; i < n; i++)
        x[i] = x[i] * win[i];
    double ratio = -1.0;
    if (pk_power_spectrum(x, n, power) == 0)
        ratio = energy_share(power, n, step, low, high, nyquist);
    free(space);
    return ratio;
}
