/*
 * The live power analysis in C (rasd.power.kernel loads it with ctypes): what its files share.
 * Each function computes what the NumPy function named beside it computes, on the same inputs,
 * in the same order of operations where that is possible (percentiles and medians are the same
 * to the bit; FFTs and sums agree to rounding).
 *
 *   _numeric.c   sums, order statistics, detrend, Hann window, small solver (NumPy's primitives)
 *   _fft.c       np.fft.rfft's magnitudes for any length
 *   _interp.c    np.interp and node_sum's even grid
 *   _spectrum.c  find_oscillation and band_energy_ratio
 *   _kernel.c    analyze_series, and the version of this contract
 *
 * Arrays are C doubles, lengths ints (longs inside). Work space is malloc'd and freed inside; a
 * function that cannot get memory says so in its return value (never aborts). NaN stands for
 * Python's None.
 *
 * Functions marked PK_INTERNAL are shared between the files only: they stay out of the
 * library's exported symbols, so what ctypes can call is exactly the rest of this header.
 *
 * Plain C, no Python API.
 */
#ifndef RASD_POWER_KERNEL_H
#define RASD_POWER_KERNEL_H

#define PK_INTERNAL __attribute__((visibility("hidden")))

/* rasd.power.metrics.MIN_SAMPLES: fewer readings are not analysed (analyze_series) and a node
 * grid shorter than this is none (node_sum). */
#define PK_MIN_SAMPLES 8

/* --- _numeric.c ------------------------------------------------------------------------- */

/* np.add.reduce of a[0..n) (np.sum, np.mean): NumPy's pairwise summation, to the bit. */
PK_INTERNAL double pk_pairwise_sum(const double *a, long n);

/* np.einsum("i,i->", a - am, b - bm) in NumPy's x86-64 order (to the bit there); am = bm = 0
 * is np.dot. */
PK_INTERNAL double pk_dot_centred(const double *a, double am, const double *b, double bm, long n);

/* np.partition(a[lo..hi), k - lo) in place: the k-th smallest at a[k], none larger before it,
 * none smaller after it, NaN sorting last. */
PK_INTERNAL void pk_select_kth(double *a, long lo, long hi, long k);

/* rasd.power.stats.median: np.median of x[0..n) (n > 0); x is not changed. NaN if x holds NaN.
 * work: n doubles of scratch. */
double pk_median(const double *x, int n, double *work);

/* rasd.power.stats.percentiles(x, qs) into out (n > 0), with work: n doubles of scratch. */
PK_INTERNAL void pk_percentiles_with(const double *x, long n, const double *qs, int nq,
                                     double *out, double *work);

/* rasd.power.stats.percentiles(x, qs) into out (n > 0). 0: done; -1: out of memory. */
int pk_percentiles(const double *x, int n, const double *qs, int nq, double *out);

/* rasd.power.stats.percentile(np.abs(np.diff(w)) / np.diff(t), q) for n >= 2 (t strictly
 * increasing). NaN when out of memory. */
double pk_ramp_percentile(const double *t, const double *w, int n, double q);

/* rasd.power.stats.detrend: w less its least-squares straight line over t, into out (may be w). */
void pk_detrend(const double *t, const double *w, int n, double *out);

/* np.hanning(n) into out. */
void pk_hann(int n, double *out);

/* np.linalg.solve for one m x m system (m <= 4), row-major a, right-hand side b: the solution
 * replaces b. a is overwritten. 0: solved; -1: singular (np.linalg.LinAlgError). */
int pk_solve(int m, double *a, double *b);

/* --- _fft.c ----------------------------------------------------------------------------- */

/* The least power of two >= m (m >= 1). */
PK_INTERNAL long pk_pow2_at_least(long m);

/* np.abs(np.fft.rfft(x[0..m), size)) into out[0..size/2] (size a power of two >= 2, m <= size).
 * 0: done; -1: out of memory. */
PK_INTERNAL int pk_rfft_abs_pow2(const double *x, long m, long size, double *out);

/* np.abs(np.fft.rfft(x[0..n))) into out[0..n/2], for any n >= 1. 0: done; -1: out of memory. */
PK_INTERNAL int pk_rfft_abs(const double *x, long n, double *out);

/* np.abs(np.fft.rfft(xw[0..n))) ** 2 into power[0..n/2]. 0: done; -1: out of memory. */
PK_INTERNAL int pk_power_spectrum(const double *xw, long n, double *power);

/* --- _interp.c -------------------------------------------------------------------------- */

/* np.interp(x, xp[0..n), fp) at one point (n > 0). guess: where the previous point landed
 * (0 to start), updated; sorted points are found fastest. */
PK_INTERNAL double pk_interp_at(double x, const double *xp, const double *fp, long n, long *guess);

/* np.interp(x[0..nx), xp[0..n), fp) into out. */
PK_INTERNAL void pk_interp(const double *x, long nx, const double *xp, const double *fp, long n,
                           double *out);

/* The grid of rasd.power.analysis.node_sum over k series (t[i], w[i], n[i] readings each, t
 * strictly increasing), all of them summed (the caller has already left out the GPUs that
 * analysis.reporting leaves out): writes its start and step to grid[0], grid[1] and returns its number
 * of points; 0 where node_sum returns None; -1: out of memory. */
int pk_node_grid(int k, const double *const *t, const double *const *w, const int *n,
                 double *grid);

/* out[j] = start + step * j for j < count (np.arange's values, as node_sum lays its grid). */
void pk_fill_grid(double start, double step, int count, double *out);

/* out[j] = the sum over i < k, in order from 0, of np.interp(points[j], t[i], w[i]) (each row
 * sorted, held at its first and last values outside it). */
void pk_interp_sum(const double *points, int count, int k, const double *const *t,
                   const double *const *w, const int *n, double *out);

/* --- _spectrum.c ------------------------------------------------------------------------ */

/* rasd.power.spectrum.find_oscillation (and the Oscillation it returns). */
typedef struct {
    double hz;           /* NaN: None */
    double amplitude;    /* watts, 0 without an oscillation */
    double energy_ratio; /* NaN: None */
    double in_band_hz;   /* NaN: None */
} pk_oscillation;

/* 0: done; -1: out of memory. t, w: an even-grid series of n readings, step seconds apart. */
int pk_find_oscillation(const double *t, const double *w, int n, double step, double low,
                        double high, double nyquist, double min_amplitude, pk_oscillation *out);

/* rasd.power.spectrum.band_energy_ratio: NaN for None, -1.0 when out of memory. */
double pk_band_energy_ratio(const double *w, int n, double step, double low, double high,
                            double nyquist);

/* --- _kernel.c -------------------------------------------------------------------------- */

/* What these functions take and return; kernel.py refuses a library built from another one. */
int pk_version(void);

/* rasd.power.analysis.analyze_series(t, w, (low, high), min_amplitude_watts=..., uniform=...).
 * t sorted (repeats allowed: dropped as _dedup does). out: PK_METRICS doubles, SeriesMetrics's
 * fields in their declared order; None as NaN; band_beyond_nyquist as 0 or 1; oscillation_band
 * as 0 (None), 1 ("below"), 2 ("in"), 3 ("above").
 * 1: analysed; 0: not analysable (analyze_series returns None); -1: out of memory. */
#define PK_METRICS 22
int pk_analyze(const double *t, const double *w, int n, double low, double high,
               double min_amplitude, int uniform, double *out);

#endif
