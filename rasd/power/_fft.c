/*
 * The real FFT of the live power analysis (declared in _kernel.h): np.fft.rfft's magnitudes for
 * any length, and the power spectrum rasd.power.spectrum takes from them.
 *
 * A real input of even length is packed two samples to a complex number and transformed at half
 * the length (then unpacked); an odd one is transformed as complex. The complex transform is a
 * self-sorting (Stockham) mixed-radix FFT: radix-4, 2, 3 and 5 butterflies, and a plain DFT
 * butterfly for a few small other primes. A length with a large prime factor goes through
 * Bluestein's chirp, a convolution done by that same FFT at a 2-3-5-smooth length >= 2L - 1.
 *
 * Twiddles are made per call from two short tables of exact cos/sin (k = a * B + b: one product
 * per entry), so a call costs O(sqrt N) trig calls and the entries stay within a few ulp. The
 * chirp e^(-pi i j^2 / L) is a lookup of j^2 mod 2L in such a table, as accurate for j near L as
 * near 0. No cache: every call has its own work space, so threads never share state.
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

/* A prime factor above this, or generic (non 2-3-5) prime factors summing above GENERIC_SUM,
 * sends a length to Bluestein: a plain DFT butterfly costs about p operations per point, more
 * than the chirp's three FFTs of twice the length beyond that. */
#define GENERIC_SUM 48
#define MAX_FACTORS 64

/* e^(-2 pi i k / size) for k < count (count <= size). Where size is a multiple of 8, only the
 * first eighth is computed; the rest follows by the symmetries of cosine and sine exactly
 * (swaps and signs): w^(size/4 - k) = -i conj(w^k), w^(k + size/4) = -i w^k. */
static void twiddles(long size, long count, cpx *tw)
{
    long direct = count, quarter = size / 4, eighth = size / 8;
    if (size % 8 == 0 && count > eighth + 1)
        direct = eighth + 1;
    long step = 1;
    while (step * step < direct)
        step++;
    /* row a: e^(-2 pi i a / size) exactly, times fine[b] = e^(-2 pi i b / size), b < step */
    const cpx *fine = tw; /* the first row is the fine table itself */
    long first = step < direct ? step : direct;
    for (long b = 0; b < first; b++) {
        double angle = 2.0 * M_PI * (double)b / (double)size;
        tw[b].re = cos(angle);
        tw[b].im = -sin(angle);
    }
    for (long a = step; a < direct; a += step) {
        double angle = 2.0 * M_PI * (double)a / (double)size;
        double cr = cos(angle), ci = -sin(angle);
        long end = a + step < direct ? a + step : direct;
        tw[a].re = cr;
        tw[a].im = ci;
        for (long k = a + 1; k < end; k++) {
            cpx f = fine[k - a];
            tw[k].re = cr * f.re - ci * f.im;
            tw[k].im = cr * f.im + ci * f.re;
        }
    }
    if (direct == count)
        return;
    for (long k = direct; k <= quarter && k < count; k++) {
        tw[k].re = -tw[quarter - k].im;
        tw[k].im = -tw[quarter - k].re;
    }
    for (long k = quarter + 1; k < count; k++) {
        tw[k].re = tw[k - quarter].im;
        tw[k].im = -tw[k - quarter].re;
    }
}

/* |z| as np.abs takes it, or its square (np.abs(z) ** 2) where `squared`: from re^2 + im^2
 * where the squares neither overflow nor lose precision to underflow (within an ulp or two of
 * hypot, at a fraction of its cost), from hypot elsewhere. */
static inline double magnitude(double re, double im, int squared)
{
    double sq = re * re + im * im;
    if (sq > 1e-290 && sq < 1e290)
        return squared ? sq : sqrt(sq);
    double h = hypot(re, im);
    return squared ? h * h : h;
}

/* The radices of n, fours first (fewest passes), then 2, 3, 5 and other primes; returns the
 * count, or 0 where n has a prime factor Bluestein should handle. */
static int factor(long n, long *rad)
{
    int count = 0;
    long generic = 0;
    while (n % 4 == 0) {
        rad[count++] = 4;
        n /= 4;
    }
    if (n % 2 == 0) {
        rad[count++] = 2;
        n /= 2;
    }
    for (long p = 3; n > 1; p += 2) {
        if (p * p > n)
            p = n;
        while (n % p == 0) {
            if (p > 5) {
                generic += p;
                if (generic > GENERIC_SUM)
                    return 0;
            }
            rad[count++] = p;
            n /= p;
        }
    }
    return count;
}

static inline cpx cmul(cpx a, cpx b)
{
    cpx r = {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
    return r;
}

static inline cpx cadd(cpx a, cpx b)
{
    cpx r = {a.re + b.re, a.im + b.im};
    return r;
}

static inline cpx csub(cpx a, cpx b)
{
    cpx r = {a.re - b.re, a.im - b.im};
    return r;
}

/* b w, or b itself where `unit` says every twiddle of the pass is 1 (the last pass: exact, as
 * b times (1, 0) would be, and cheaper). */
static inline cpx twiddled(cpx b, cpx w, int unit)
{
    return unit ? b : cmul(b, w);
}

/* One Stockham pass of radix r over a transform of length `total`: the current sub-transforms
 * have length r * m, interleaved with stride s. y[q + s (r p + u)] = DFT_r(x[q + s (p + t m)])[u]
 * times w^(p u s). tw[k * ts] = e^(-2 pi i k / total). */
static inline __attribute__((always_inline)) void pass_body(long r, long m, long s, const cpx *x, cpx *y,
                                                             const cpx *tw, long ts, long total, int unit)
{
    const double h3 = 0.86602540378443864676; /* sin(2 pi / 3) */
    const double c1 = 0.30901699437494742410, c2 = -0.80901699437494742410; /* cos(2 pi / 5), cos(4 pi / 5) */
    const double s1 = 0.95105651629515357212, s2 = 0.58778525229247312917; /* sin(2 pi / 5), sin(4 pi / 5) */
    for (long p = 0; p < m; p++) {
        const cpx *in = x + s * p;
        cpx *out = y + s * r * p;
        long tp = p * s * ts;
        if (r == 4) {
            cpx w1 = tw[tp], w2 = tw[2 * tp], w3 = tw[3 * tp];
            for (long q = 0; q < s; q++) {
                cpx a0 = in[q], a1 = in[q + s * m], a2 = in[q + 2 * s * m], a3 = in[q + 3 * s * m];
                cpx t0 = {a0.re + a2.re, a0.im + a2.im}, t1 = {a0.re - a2.re, a0.im - a2.im};
                cpx t2 = {a1.re + a3.re, a1.im + a3.im}, t3 = {a1.re - a3.re, a1.im - a3.im};
                /* b1 = t1 - i t3, b3 = t1 + i t3 */
                cpx b0 = {t0.re + t2.re, t0.im + t2.im}, b2 = {t0.re - t2.re, t0.im - t2.im};
                cpx b1 = {t1.re + t3.im, t1.im - t3.re}, b3 = {t1.re - t3.im, t1.im + t3.re};
                out[q] = b0;
                out[q + s] = twiddled(b1, w1, unit);
                out[q + 2 * s] = twiddled(b2, w2, unit);
                out[q + 3 * s] = twiddled(b3, w3, unit);
            }
        } else if (r == 2) {
            cpx w1 = tw[tp];
            for (long q = 0; q < s; q++) {
                cpx a0 = in[q], a1 = in[q + s * m];
                cpx b0 = {a0.re + a1.re, a0.im + a1.im}, b1 = {a0.re - a1.re, a0.im - a1.im};
                out[q] = b0;
                out[q + s] = twiddled(b1, w1, unit);
            }
        } else if (r == 3) {
            cpx w1 = tw[tp], w2 = tw[2 * tp];
            for (long q = 0; q < s; q++) {
                cpx a0 = in[q], a1 = in[q + s * m], a2 = in[q + 2 * s * m];
                cpx t = {a1.re + a2.re, a1.im + a2.im}, d = {a1.re - a2.re, a1.im - a2.im};
                cpx b0 = {a0.re + t.re, a0.im + t.im};
                double mr = a0.re - 0.5 * t.re, mi = a0.im - 0.5 * t.im;
                cpx b1 = {mr + h3 * d.im, mi - h3 * d.re}, b2 = {mr - h3 * d.im, mi + h3 * d.re};
                out[q] = b0;
                out[q + s] = twiddled(b1, w1, unit);
                out[q + 2 * s] = twiddled(b2, w2, unit);
            }
        } else if (r == 5) {
            cpx w1 = tw[tp], w2 = tw[2 * tp], w3 = tw[3 * tp], w4 = tw[4 * tp];
            for (long q = 0; q < s; q++) {
                cpx a0 = in[q], a1 = in[q + s * m], a2 = in[q + 2 * s * m];
                cpx a3 = in[q + 3 * s * m], a4 = in[q + 4 * s * m];
                cpx t1 = {a1.re + a4.re, a1.im + a4.im}, t2 = {a2.re + a3.re, a2.im + a3.im};
                cpx d1 = {a1.re - a4.re, a1.im - a4.im}, d2 = {a2.re - a3.re, a2.im - a3.im};
                cpx b0 = {a0.re + t1.re + t2.re, a0.im + t1.im + t2.im};
                double pr = a0.re + c1 * t1.re + c2 * t2.re, pi = a0.im + c1 * t1.im + c2 * t2.im;
                double qr = a0.re + c2 * t1.re + c1 * t2.re, qi = a0.im + c2 * t1.im + c1 * t2.im;
                double ur = s1 * d1.re + s2 * d2.re, ui = s1 * d1.im + s2 * d2.im;
                double vr = s2 * d1.re - s1 * d2.re, vi = s2 * d1.im - s1 * d2.im;
                /* b1 = P - i U, b4 = P + i U, b2 = Q - i V, b3 = Q + i V */
                cpx b1 = {pr + ui, pi - ur}, b4 = {pr - ui, pi + ur};
                cpx b2 = {qr + vi, qi - vr}, b3 = {qr - vi, qi + vr};
                out[q] = b0;
                out[q + s] = twiddled(b1, w1, unit);
                out[q + 2 * s] = twiddled(b2, w2, unit);
                out[q + 3 * s] = twiddled(b3, w3, unit);
                out[q + 4 * s] = twiddled(b4, w4, unit);
            }
        } else { /* another small odd prime: a plain DFT of r points, by conjugate pairs */
            long root = total / r, half = r / 2; /* e^(-2 pi i / r) = tw[root * ts] */
            double cs[GENERIC_SUM], sn[GENERIC_SUM]; /* cos, sin of 2 pi k / r */
            for (long k = 0; k < r; k++) {
                cs[k] = tw[k * root * ts].re;
                sn[k] = -tw[k * root * ts].im;
            }
            for (long q = 0; q < s; q++) {
                cpx a0 = in[q], sum[GENERIC_SUM / 2 + 1], dif[GENERIC_SUM / 2 + 1];
                cpx b0 = a0;
                for (long t = 1; t <= half; t++) {
                    cpx lo = in[q + t * s * m], hi = in[q + (r - t) * s * m];
                    sum[t] = cadd(lo, hi);
                    dif[t] = csub(lo, hi);
                    b0 = cadd(b0, sum[t]);
                }
                out[q] = b0;
                /* b_u = a0 + C - i S, b_(r-u) = a0 + C + i S, where
                 * C = sum_t (a_t + a_(r-t)) cos(2 pi t u / r), S = sum_t (a_t - a_(r-t)) sin(...) */
                for (long u = 1; u <= half; u++) {
                    cpx c = a0, sv = {0.0, 0.0};
                    for (long t = 1, k = u; t <= half; t++) {
                        c.re += sum[t].re * cs[k];
                        c.im += sum[t].im * cs[k];
                        sv.re += dif[t].re * sn[k];
                        sv.im += dif[t].im * sn[k];
                        k += u;
                        if (k >= r)
                            k -= r;
                    }
                    cpx bu = {c.re + sv.im, c.im - sv.re}, bv = {c.re - sv.im, c.im + sv.re};
                    out[q + u * s] = twiddled(bu, tw[u * tp], unit);
                    out[q + (r - u) * s] = twiddled(bv, tw[(r - u) * tp], unit);
                }
            }
        }
    }
}

/* pass_body, with the first pass's stride (1: one butterfly per twiddle) made a constant so
 * the compiler drops its inner loop there, and the last pass's twiddles (all 1: m == 1) left
 * out. */
static void pass(long r, long m, long s, const cpx *x, cpx *y, const cpx *tw, long ts, long total)
{
    if (s == 1)
        pass_body(r, m, 1, x, y, tw, ts, total, 0);
    else if (m == 1)
        pass_body(r, 1, s, x, y, tw, ts, total, 1);
    else
        pass_body(r, m, s, x, y, tw, ts, total, 0);
}

/* The forward DFT of a[0..n) by the passes of `rad`, with tw[k * ts] = e^(-2 pi i k / n);
 * work is n long. Only a[0..used) may be nonzero (a zero-padded input): while the first
 * sub-transforms' inputs hold one nonzero point each, a power-of-two radix R pass is just that
 * point times its twiddles, so it replaces log2 R butterfly passes. Returns where the result
 * is (a or work). */
static cpx *stockham(cpx *a, cpx *work, long n, long used, const cpx *tw, long ts)
{
    long rad[MAX_FACTORS];
    long s = 1, m = n;
    cpx *x = a, *y = work;
    long pruned = 1;
    while (pruned < 64 && n % (pruned * 2) == 0 && n / (pruned * 2) >= used)
        pruned *= 2;
    if (pruned >= 4) {
        m = n / pruned;
        for (long p = 0; p < m; p++) {
            cpx *out = y + pruned * p;
            if (p >= used) {
                memset(out, 0, sizeof(cpx) * (size_t)pruned);
                continue;
            }
            cpx v = x[p];
            out[0] = v;
            for (long u = 1, k = p * ts; u < pruned; u++, k += p * ts)
                out[u] = cmul(v, tw[k]);
        }
        s = pruned;
        x = work;
        y = a;
    }
    int count = factor(m, rad);
    for (int i = 0; i < count; i++) {
        long r = rad[i];
        m /= r;
        pass(r, m, s, x, y, tw, ts, n);
        s *= r;
        cpx *t = x;
        x = y;
        y = t;
    }
    return x;
}

/* The smallest 2-3-5-smooth number >= m. */
static long smooth_at_least(long m)
{
    long best = pk_pow2_at_least(m);
    for (long f5 = 1; f5 < best; f5 *= 5)
        for (long f35 = f5; f35 < best; f35 *= 3) {
            long v = f35;
            while (v < m)
                v *= 2;
            if (v < best)
                best = v;
        }
    return best;
}

/* Whether the mixed-radix passes take length n directly (else Bluestein's chirp). */
static int direct(long n)
{
    long rad[MAX_FACTORS];
    return n == 1 || factor(n, rad) > 0;
}

/* Bluestein's chirp, the forward DFT of z[0..n) in place (n with a large prime factor):
 * X[k] = c[k] sum_j (z[j] c[j]) conj(c[k - j]), c[j] = e^(-pi i j^2 / n), a convolution done
 * by the mixed-radix FFT at a 2-3-5-smooth length >= 2n - 1. -1: out of memory. */
static int bluestein(cpx *z, long n)
{
    long size = smooth_at_least(2 * n - 1);
    /* a, b, work and the FFT's twiddles: size each; the chirp's table e^(-2 pi i k / 2n): 2n */
    cpx *space = malloc(sizeof(cpx) * ((size_t)size * 4 + (size_t)n * 2));
    if (!space)
        return -1;
    cpx *a = space, *b = a + size, *work = b + size, *stw = work + size, *chirp = stw + size;
    twiddles(2 * n, 2 * n, chirp);
    twiddles(size, size, stw);
    memset(a, 0, sizeof(cpx) * (size_t)size);
    memset(b, 0, sizeof(cpx) * (size_t)size);
    for (long j = 0; j < n; j++) {
        /* j^2 mod 2n: the chirp's angle stays small, as accurate for j near n as near 0 */
        cpx c = chirp[(uint64_t)j * (uint64_t)j % (uint64_t)(2 * n)];
        a[j] = cmul(z[j], c);
        b[j].re = c.re;
        b[j].im = -c.im;
        if (j)
            b[size - j] = b[j];
    }
    cpx *fa = stockham(a, work, size, n, stw, 1);
    cpx *other = fa == a ? work : a;
    cpx *fb = stockham(b, other, size, size, stw, 1);
    cpx *spare = fb == b ? other : b;
    /* the inverse transform as conj(DFT(conj(.))) */
    for (long k = 0; k < size; k++) {
        cpx p = cmul(fa[k], fb[k]);
        fa[k].re = p.re;
        fa[k].im = -p.im;
    }
    cpx *conv = stockham(fa, spare, size, size, stw, 1);
    for (long k = 0; k < n; k++) {
        cpx v = {conv[k].re / (double)size, -conv[k].im / (double)size};
        z[k] = cmul(v, chirp[(uint64_t)k * (uint64_t)k % (uint64_t)(2 * n)]);
    }
    free(space);
    return 0;
}

/* The forward DFT of z[0..n) (only z[0..used) nonzero), any n >= 1; work is n long and
 * tw[k * ts] = e^(-2 pi i k / n) where given (NULL: made here). Sets *res to where the result
 * is (z or work). -1: out of memory. */
static int dft(cpx *z, cpx *work, long n, long used, const cpx *tw, long ts, cpx **res)
{
    *res = z;
    if (!direct(n))
        return bluestein(z, n);
    cpx *own = NULL;
    if (!tw) {
        tw = own = malloc(sizeof(cpx) * (size_t)n);
        if (!own)
            return -1;
        twiddles(n, n, own);
        ts = 1;
    }
    *res = stockham(z, work, n, used, tw, ts);
    free(own);
    return 0;
}

long pk_pow2_at_least(long m)
{
    long p = 1;
    while (p < m)
        p <<= 1;
    return p;
}

/* |X[k]| (or |X[k]|^2 where `squared`) for k <= size / 2, X the DFT of x[0..m) zero-padded to
 * size (even, >= 2): the real input is packed two to a complex number and the half-length
 * transform unpacked. */
static int rfft_even(const double *x, long m, long size, double *out, int squared)
{
    long half = size / 2;
    /* z, the passes' work space and their twiddles e^(-2 pi i j / half): half each; the
     * unpacking's e^(-2 pi i k / size), k <= size / 4: quarter + 1 */
    cpx *space = malloc(sizeof(cpx) * (size_t)(half * 3 + size / 4 + 1));
    if (!space)
        return -1;
    cpx *z = space, *work = z + half, *ftw = work + half, *tw = ftw + half;
    long pairs = m < size ? m / 2 : half;
    for (long j = 0; j < pairs; j++) {
        z[j].re = x[2 * j];
        z[j].im = x[2 * j + 1];
    }
    memset(z + pairs, 0, sizeof(cpx) * (size_t)(half - pairs));
    if (pairs < half && 2 * pairs < m) /* m odd: its last sample */
        z[pairs].re = x[2 * pairs];
    twiddles(size, size / 4 + 1, tw);
    if (direct(half))
        twiddles(half, half, ftw);
    if (dft(z, work, half, (m + 1) / 2, ftw, 1, &z) < 0) {
        free(space);
        return -1;
    }
    out[0] = magnitude(z[0].re + z[0].im, 0.0, squared);
    out[half] = magnitude(z[0].re - z[0].im, 0.0, squared);
    for (long k = 1; 2 * k <= half; k++) {
        /* the even and odd samples' spectra: E = (Z[k] + conj Z[h-k]) / 2,
         * O = (Z[k] - conj Z[h-k]) / 2i; X[k] = E + w^k O with w = e^(-2 pi i / size), and
         * X[h-k] = conj(E - w^k O) (E and O at h-k are the conjugates, w^(h-k) = -conj w^k) */
        cpx a = z[k], b = z[half - k];
        double er = 0.5 * (a.re + b.re), ei = 0.5 * (a.im - b.im);
        double or_ = 0.5 * (a.im + b.im), oi = -0.5 * (a.re - b.re);
        double tr = or_ * tw[k].re - oi * tw[k].im, ti = or_ * tw[k].im + oi * tw[k].re;
        out[k] = magnitude(er + tr, ei + ti, squared);
        if (2 * k < half)
            out[half - k] = magnitude(er - tr, ei - ti, squared);
    }
    free(space);
    return 0;
}

/* |X[k]| for k <= size / 2, X the DFT of x[0..m) zero-padded to size (a power of two >= 2):
 * np.abs(np.fft.rfft(x, size)). */
int pk_rfft_abs_pow2(const double *x, long m, long size, double *out)
{
    return rfft_even(x, m, size, out, 0);
}

/* np.abs(np.fft.rfft(x)) (or its square) for any length n >= 1. */
static int rfft(const double *x, long n, double *out, int squared)
{
    if (n <= 1) { /* n < 1: no spectrum, nothing written */
        if (n == 1)
            out[0] = magnitude(x[0], 0.0, squared);
        return 0;
    }
    if (n % 2 == 0)
        return rfft_even(x, n, n, out, squared);
    cpx *space = malloc(sizeof(cpx) * (size_t)n * 2), *z = space;
    if (!space)
        return -1;
    for (long j = 0; j < n; j++) {
        z[j].re = x[j];
        z[j].im = 0.0;
    }
    int rc = dft(z, z + n, n, n, NULL, 1, &z);
    if (rc == 0)
        for (long k = 0; k <= n / 2; k++)
            out[k] = magnitude(z[k].re, z[k].im, squared);
    free(space);
    return rc;
}

int pk_rfft_abs(const double *x, long n, double *out)
{
    return rfft(x, n, out, 0);
}

/* np.abs(np.fft.rfft(xw)) ** 2 into power[0..n/2] (re^2 + im^2: the same to rounding).
 * -1: out of memory. */
int pk_power_spectrum(const double *xw, long n, double *power)
{
    return rfft(xw, n, power, 1);
}
