/*
 * The real FFT of the live power analysis (declared in _kernel.h): np.fft.rfft's magnitudes for
 * any length, radix-2 where the length is a power of two, Bluestein's chirp elsewhere, and the
 * power spectrum rasd.power.spectrum takes from them.
 *
 * The values agree with NumPy's (pocketfft) to rounding, not to the bit: the decisions built on
 * them (which peak wins, an oscillation found or not) are checked against NumPy's on many
 * windows by tests/power/test_kernel_spectrum.py. Build without floating-point contraction
 * (-ffp-contract=off) and never with -ffast-math.
 *
 * Plain C, no Python API: loaded with ctypes (rasd.power.kernel).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernel.h"

typedef struct {
    double re, im;
} cpx;

/* e^(-2 pi i k / size) for k < size / 2 (size a power of two). Only the first eighth is
 * computed; the rest follows by the symmetries of cosine and sine, exactly (swaps and signs),
 * which keeps every entry as accurate as a direct cos/sin and costs a quarter of them. */
static void twiddles(long size, cpx *tw)
{
    long half = size / 2;
    if (size < 8) {
        for (long k = 0; k < half; k++) {
            double angle = 2.0 * M_PI * (double)k / (double)size;
            tw[k].re = cos(angle);
            tw[k].im = -sin(angle);
        }
        return;
    }
    long quarter = size / 4, eighth = size / 8;
    for (long k = 0; k <= eighth; k++) {
        double angle = 2.0 * M_PI * (double)k / (double)size;
        tw[k].re = cos(angle);
        tw[k].im = -sin(angle);
    }
    for (long k = eighth + 1; k <= quarter; k++) { /* cos a = sin(pi/2 - a) */
        tw[k].re = -tw[quarter - k].im;
        tw[k].im = -tw[quarter - k].re;
    }
    for (long k = quarter + 1; k < half; k++) { /* cos a = -cos(pi - a), sin a = sin(pi - a) */
        tw[k].re = -tw[half - k].re;
        tw[k].im = tw[half - k].im;
    }
}

/* In-place radix-2 FFT of a[0..size) (size a power of two), with twiddles tw of a transform
 * `stride` times longer (tw[k * stride] = e^(-2 pi i k / size)); inverse: conjugate twiddles,
 * no scaling. */
static void fft(cpx *a, long size, const cpx *tw, long stride, int inverse)
{
    for (long i = 1, j = 0; i < size; i++) { /* bit-reversed order */
        long bit = size >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j |= bit;
        if (i < j) {
            cpx s = a[i];
            a[i] = a[j];
            a[j] = s;
        }
    }
    for (long len = 2; len <= size; len <<= 1) {
        long half = len / 2, skip = size / len * stride;
        for (long j = 0; j < half; j++) {
            cpx w = tw[j * skip];
            if (inverse)
                w.im = -w.im;
            for (long i = j; i < size; i += len) {
                cpx u = a[i], v = a[i + half];
                double vr = v.re * w.re - v.im * w.im, vi = v.re * w.im + v.im * w.re;
                a[i].re = u.re + vr;
                a[i].im = u.im + vi;
                a[i + half].re = u.re - vr;
                a[i + half].im = u.im - vi;
            }
        }
    }
}

long pk_pow2_at_least(long m)
{
    long p = 1;
    while (p < m)
        p <<= 1;
    return p;
}

/* |X[k]| for k <= size / 2, X the DFT of x[0..m) zero-padded to size (a power of two >= 2):
 * np.abs(np.fft.rfft(x, size)). The real input is packed two to a complex number and the
 * half-length transform unpacked (half the work of a complex transform of the same size). */
int pk_rfft_abs_pow2(const double *x, long m, long size, double *out)
{
    long half = size / 2;
    cpx *z = malloc(sizeof(cpx) * (size_t)half);
    cpx *tw = malloc(sizeof(cpx) * (size_t)half);
    if (!z || !tw) {
        free(z);
        free(tw);
        return -1;
    }
    for (long j = 0; j < half; j++) {
        z[j].re = 2 * j < m ? x[2 * j] : 0.0;
        z[j].im = 2 * j + 1 < m ? x[2 * j + 1] : 0.0;
    }
    twiddles(size, tw);
    fft(z, half, tw, 2, 0);
    out[0] = fabs(z[0].re + z[0].im);
    out[half] = fabs(z[0].re - z[0].im);
    for (long k = 1; k < half; k++) {
        /* the even and odd samples' spectra: E = (Z[k] + conj Z[h-k]) / 2,
         * O = (Z[k] - conj Z[h-k]) / 2i; X[k] = E + e^(-2 pi i k / size) O */
        cpx a = z[k], b = z[half - k];
        double er = 0.5 * (a.re + b.re), ei = 0.5 * (a.im - b.im);
        double or_ = 0.5 * (a.im + b.im), oi = -0.5 * (a.re - b.re);
        double xr = er + (or_ * tw[k].re - oi * tw[k].im);
        double xi = ei + (or_ * tw[k].im + oi * tw[k].re);
        out[k] = hypot(xr, xi);
    }
    free(z);
    free(tw);
    return 0;
}

/* np.abs(np.fft.rfft(x)) for any length n >= 1: radix-2 where n is a power of two, else
 * Bluestein's chirp: X[k] = c[k] * sum_j (x[j] c[j]) conj(c[k - j]) with c[j] = e^(-pi i j^2 / n),
 * a convolution done by power-of-two FFTs at least 2n - 1 long. */
int pk_rfft_abs(const double *x, long n, double *out)
{
    if (n <= 1) { /* n < 1: no spectrum, nothing written (and the chirp below is never empty) */
        if (n == 1)
            out[0] = fabs(x[0]);
        return 0;
    }
    if ((n & (n - 1)) == 0)
        return pk_rfft_abs_pow2(x, n, n, out);
    long size = pk_pow2_at_least(2 * n - 1);
    cpx *a = malloc(sizeof(cpx) * (size_t)size);
    cpx *b = malloc(sizeof(cpx) * (size_t)size);
    cpx *chirp = malloc(sizeof(cpx) * (size_t)n);
    cpx *tw = malloc(sizeof(cpx) * (size_t)(size / 2));
    if (!a || !b || !chirp || !tw) {
        free(a);
        free(b);
        free(chirp);
        free(tw);
        return -1;
    }
    for (long j = 0; j < n; j++) {
        /* j^2 mod 2n keeps the angle small, so it is as accurate for j near n as near 0 */
        uint64_t sq = (uint64_t)j * (uint64_t)j % (uint64_t)(2 * n);
        double angle = M_PI * (double)sq / (double)n;
        chirp[j].re = cos(angle);
        chirp[j].im = -sin(angle);
    }
    memset(a, 0, sizeof(cpx) * (size_t)size);
    memset(b, 0, sizeof(cpx) * (size_t)size);
    for (long j = 0; j < n; j++) {
        a[j].re = x[j] * chirp[j].re;
        a[j].im = x[j] * chirp[j].im;
    }
    b[0].re = chirp[0].re;
    b[0].im = -chirp[0].im;
    for (long j = 1; j < n; j++) {
        b[j].re = b[size - j].re = chirp[j].re;
        b[j].im = b[size - j].im = -chirp[j].im;
    }
    twiddles(size, tw);
    fft(a, size, tw, 1, 0);
    fft(b, size, tw, 1, 0);
    for (long k = 0; k < size; k++) {
        double re = a[k].re * b[k].re - a[k].im * b[k].im;
        double im = a[k].re * b[k].im + a[k].im * b[k].re;
        a[k].re = re;
        a[k].im = im;
    }
    fft(a, size, tw, 1, 1);
    for (long k = 0; k <= n / 2; k++) {
        double re = a[k].re / (double)size, im = a[k].im / (double)size;
        out[k] = hypot(re * chirp[k].re - im * chirp[k].im, re * chirp[k].im + im * chirp[k].re);
    }
    free(a);
    free(b);
    free(chirp);
    free(tw);
    return 0;
}

/* np.abs(np.fft.rfft(xw)) ** 2 into power[0..n/2]. -1: out of memory. */
int pk_power_spectrum(const double *xw, long n, double *power)
{
    if (pk_rfft_abs(xw, n, power) < 0)
        return -1;
    for (long k = 0; k <= n / 2; k++)
        power[k] = power[k] * power[k]; /* np.abs(...) ** 2 */
    return 0;
}
