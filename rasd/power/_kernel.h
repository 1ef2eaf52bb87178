/*
 * The live power analysis in C (rasd.power.kernel loads it with ctypes): what _kernel.c and
 * _spectrum.c share. Each function computes what the NumPy function named beside it computes,
 * on the same inputs, in the same order of operations where that is possible (percentiles and
 * medians are the same to the bit; FFTs and sums agree to rounding).
 *
 * Arrays are C doubles, lengths ints. Work space is malloc'd and freed inside; a function that
 * cannot get memory says so in its return value (never aborts). NaN stands for Python's None.
 *
 * Plain C, no Python API.
 */
#ifndef RASD_POWER_KERNEL_H
#define RASD_POWER_KERNEL_H

/* --- _spectrum.c ------------------------------------------------------------------------ */

/* rasd.power.stats.median: np.median of x[0..n) (n > 0); x is not changed. NaN if x holds NaN.
 * work: n doubles of scratch. */
double pk_median(const double *x, int n, double *work);

/* rasd.power.stats.detrend: w less its least-squares straight line over t, into out (may be w). */
void pk_detrend(const double *t, const double *w, int n, double *out);

/* np.hanning(n) into out. */
void pk_hann(int n, double *out);

/* np.linalg.solve for one m x m system (m <= 4), row-major a, right-hand side b: the solution
 * replaces b. a is overwritten. 0: solved; -1: singular (np.linalg.LinAlgError). */
int pk_solve(int m, double *a, double *b);

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

/* --- _kernel.c (the functions rasd.power.kernel calls) ---------------------------------- */

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

/* rasd.power.stats.percentiles(x, qs) into out (n > 0). 0: done; -1: out of memory. */
int pk_percentiles(const double *x, int n, const double *qs, int nq, double *out);

/* rasd.power.stats.percentile(np.abs(np.diff(w)) / np.diff(t), q) for n >= 2 (t strictly
 * increasing). NaN when out of memory. */
double pk_ramp_percentile(const double *t, const double *w, int n, double q);

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

#endif
