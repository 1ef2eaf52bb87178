/*
 * The fake node's power model, the part every step pays (rasd.backends.fake.stepper): the board's
 * response to demand, and delivered power and what integrates it without smoothing or a reset.
 *
 * Why native: a simulated GPU takes 200 steps a second; in Python each costs about 200 ns of the
 * reading process's CPU, here a few. The arithmetic is the Python loop's, operation for operation
 * in the same order on IEEE doubles, so every value is the same to the bit: build without
 * floating-point contraction (-ffp-contract=off: a fused multiply-add rounds once where Python
 * rounds twice) and never with -ffast-math. The loader checks this against the Python loop on a
 * test sequence before it uses the library.
 *
 * Below them, the instant-power field (186) as a native reader takes it (fk_*): see there.
 *
 * Plain C, no Python API: loaded with ctypes.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* What these functions take and do; stepper.py refuses a library built from another version. */
int ps_version(void)
{
    return 2;
}

/* consts: t_idle, w_idle, span, t_span, step seconds, thermal response
 * state (in and out): watts, temperature, energy mJ, hold seconds, window sum, and on return the
 * window sum after step ``cut`` (the refresh), where 1 <= cut <= n
 * window: the last ``wlen`` delivered watts, a ring whose oldest entry is at ``wpos``
 * Returns the ring's new oldest position. */
int ps_fold(const double *raws, int n, double limit, double *window, int wlen, int wpos,
            double *state, int cut, const double *consts)
{
    double out = state[0], temp = state[1], energy = state[2], hold = state[3], wsum = state[4];
    const double t_idle = consts[0], w_idle = consts[1], span = consts[2], t_span = consts[3];
    const double step_s = consts[4], thermal = consts[5];
    for (int j = 0; j < n; j++) {
        double raw = raws[j];
        double now = raw < limit ? raw : limit;
        if (now > out)
            hold = 0.0;
        else if (now < out)
            hold += step_s;
        out = now;
        temp += (t_idle + (out - w_idle) / span * t_span - temp) * thermal;
        energy += out * step_s * 1000.0;
        wsum += out - window[wpos];
        window[wpos] = out;
        wpos = wpos + 1 == wlen ? 0 : wpos + 1;
        if (j + 1 == cut)
            state[5] = wsum;
    }
    state[0] = out, state[1] = temp, state[2] = energy, state[3] = hold, state[4] = wsum;
    return wpos;
}

/* The board's response to demand, for the runs of steps ``bases``/``counts``: step j of a run
 * demands base * ripple[i], i counting on from ``start`` around the ``ripple_len`` factors, and
 * raw += (demand - raw) * response. Writes each step's raw draw to ``out``; returns the last. */
double ps_raw(double raw, const double *ripple, int ripple_len, int start, const double *bases,
              const int *counts, int nruns, double response, double *out)
{
    int i = start;
    for (int q = 0; q < nruns; q++) {
        const double base = bases[q];
        for (int c = counts[q]; c > 0; c--) {
            raw += (base * ripple[i] - raw) * response;
            *out++ = raw;
            if (++i == ripple_len)
                i = 0;
        }
    }
    return raw;
}

/*
 * The instant-power field for a native reader (rasd.backends.fake.instant).
 *
 * rasd reads instant power on a native thread (rasd/backends/nvml/_powerloop.c) through a function
 * with nvmlDeviceGetFieldValues's signature. On the fake node that function is fk_field_values: it
 * answers from the power model's raw draws, which the model publishes as it computes them (a second
 * or more ahead of time), so a read runs no Python, as a read of the C library runs none. The value
 * is GpuPowerSim.instant's without power smoothing: the mean of the refresh's five steps, each raw
 * draw clipped at the power limit in force for that step, same operations in the same order (build
 * without floating-point contraction). Anything else (another field, smoothing on, a GPU with
 * scripted events, a step not published yet, a limit older than the kept ones) goes to the
 * fallback, a function with the same signature that reads through the fake NVML in Python.
 */

/* nvml.h's nvmlFieldValue_t (rasd.backends.fake.instant checks the binding's layout against it) */
typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    int valueType;
    int nvmlReturn;
    union {
        double dVal;
        unsigned int uiVal;
        unsigned long ulVal;
        unsigned long long ullVal;
        signed long long sllVal;
        signed int siVal;
        unsigned short usVal;
    } value;
} fk_field_value;

typedef int (*fk_read_fn)(void *device, int count, fk_field_value *values);

#define FK_LIMITS 4
#define FK_STEP_SECONDS 0.005 /* powersim.STEP_SECONDS */
#define FK_REFRESH_STEPS 20   /* powersim.REFRESH_STEPS */
#define FK_WINDOW_STEPS 5     /* powersim.INSTANT_WINDOW_STEPS */

typedef struct {
    pthread_mutex_t lock; /* guards everything below but the constants */
    /* constants */
    unsigned int field_id;
    int offset;    /* the GPU's refresh offset, steps */
    double t0;     /* the node's start on CLOCK_MONOTONIC, seconds (as time.monotonic gives it) */
    double wall0;  /* Unix seconds at t = 0 */
    fk_read_fn fallback;
    double *ring;  /* raw draw of step k at ring[k % cap] for lo <= k <= hi */
    int cap;
    /* published by the model */
    int plain;     /* 1: answer from the raws; 0: every read goes to the fallback */
    long long lo, hi;
    int nlimits;   /* limit[i] holds from step from[i] on; newest last */
    long long from[FK_LIMITS];
    double limit[FK_LIMITS];
    /* the last refresh answered (a refresh is computed once, as the model caches it) */
    long long cached_r;
    unsigned int cached_mw;
    /* counts */
    long long native_reads, fallback_reads;
} fk_gpu;

size_t fk_size(void) { return sizeof(fk_gpu); }

void fk_init(fk_gpu *g, unsigned int field_id, int offset, double t0, double wall0, double *ring, int cap,
             fk_read_fn fallback)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    g->field_id = field_id;
    g->offset = offset;
    g->t0 = t0;
    g->wall0 = wall0;
    g->ring = ring;
    g->cap = cap;
    g->fallback = fallback;
    g->lo = 1, g->hi = 0; /* nothing published */
    g->cached_r = INT64_MIN;
}

/* Raw draws of steps first .. first + n - 1 (continuing the published ones, or starting afresh). */
void fk_put(fk_gpu *g, long long first, const double *raws, int n)
{
    pthread_mutex_lock(&g->lock);
    if (first != g->hi + 1)
        g->lo = first;
    for (int j = 0; j < n; j++)
        g->ring[(first + j) % g->cap] = raws[j];
    g->hi = first + n - 1;
    if (g->hi - g->lo + 1 > g->cap)
        g->lo = g->hi - g->cap + 1;
    pthread_mutex_unlock(&g->lock);
}

/* From step ``from`` on, raw draws are clipped at ``limit`` watts; ``forget``: steps before ``from``
 * are no longer answered from the raws (their delivered power followed other rules). ``known``:
 * the model's own answer for its last refresh at this moment is refresh ``r`` with ``mw``, which a
 * read of that refresh then gives unchanged. */
void fk_limit(fk_gpu *g, long long from, double limit, int forget, int known, long long r, unsigned int mw)
{
    pthread_mutex_lock(&g->lock);
    if (forget)
        g->nlimits = 0;
    if (g->nlimits == FK_LIMITS) {
        memmove(g->from, g->from + 1, (FK_LIMITS - 1) * sizeof g->from[0]);
        memmove(g->limit, g->limit + 1, (FK_LIMITS - 1) * sizeof g->limit[0]);
        g->nlimits--;
    }
    g->from[g->nlimits] = from;
    g->limit[g->nlimits] = limit;
    g->nlimits++;
    if (known)
        g->cached_r = r, g->cached_mw = mw;
    else if (g->cached_r >= from) /* answered before the change reached here: answer afresh */
        g->cached_r = INT64_MIN;
    pthread_mutex_unlock(&g->lock);
}

/* The model answered refresh ``r`` with ``mw`` (a read through Python, or a step of the model): a
 * native read of that refresh gives the same. */
void fk_answered(fk_gpu *g, long long r, unsigned int mw)
{
    pthread_mutex_lock(&g->lock);
    if (r >= g->cached_r)
        g->cached_r = r, g->cached_mw = mw;
    pthread_mutex_unlock(&g->lock);
}

void fk_plain(fk_gpu *g, int plain)
{
    pthread_mutex_lock(&g->lock);
    g->plain = plain;
    pthread_mutex_unlock(&g->lock);
}

void fk_counts(fk_gpu *g, long long *native_reads, long long *fallback_reads)
{
    pthread_mutex_lock(&g->lock);
    *native_reads = g->native_reads;
    *fallback_reads = g->fallback_reads;
    pthread_mutex_unlock(&g->lock);
}

/* The refresh a read at ``t`` seconds since start sees and its value; 0 where the published
 * state cannot answer it (caller holds the lock). */
static int value_at(fk_gpu *g, double t, long long *r_out, unsigned int *mw_out)
{
    if (!g->plain || g->nlimits == 0)
        return 0;
    long long last = (long long)(t / FK_STEP_SECONDS + 1e-6); /* GpuPowerSim._last_step */
    long long m = (last - g->offset) % FK_REFRESH_STEPS;
    if (m < 0)
        m += FK_REFRESH_STEPS;
    long long r = last - m;
    if (r == g->cached_r) {
        *r_out = r, *mw_out = g->cached_mw;
        return 1;
    }
    long long first = r - FK_WINDOW_STEPS + 1;
    if (first < g->lo || r > g->hi || first < g->from[0])
        return 0;
    double sum = 0.0;
    int li = 0;
    for (long long k = first; k <= r; k++) {
        while (li + 1 < g->nlimits && g->from[li + 1] <= k)
            li++;
        double x = g->ring[k % g->cap], lim = g->limit[li];
        sum += x < lim ? x : lim;
    }
    unsigned int mw = (unsigned int)(long long)(sum / FK_WINDOW_STEPS * 1000.0);
    if (r > g->cached_r) /* a read whose clock was taken before the newest refresh answered */
        g->cached_r = r, g->cached_mw = mw;
    *r_out = r, *mw_out = mw;
    return 1;
}

/* value_at for a given time, for the loader's check and tests: 1 and the refresh's step, value
 * and NVML stamp (us), or 0 where the fallback would answer. */
int fk_value_at(fk_gpu *g, double t, long long *r, unsigned int *mw, long long *stamp_us)
{
    pthread_mutex_lock(&g->lock);
    int ok = value_at(g, t, r, mw);
    pthread_mutex_unlock(&g->lock);
    if (ok) /* fields.instant_reader: int(round((wall0 + at) * 1_000_000)) */
        *stamp_us = (long long)nearbyint((g->wall0 + (double)*r * FK_STEP_SECONDS) * 1000000.0);
    return ok;
}

/* nvmlDeviceGetFieldValues for the fake GPU ``device`` (an fk_gpu). */
int fk_field_values(void *device, int count, fk_field_value *values)
{
    fk_gpu *g = device;
    if (count == 1 && values[0].fieldId == g->field_id && values[0].scopeId == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        /* as time.monotonic() gives it, then FakeNode.elapsed() */
        double t = (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9 - g->t0;
        long long r, stamp;
        unsigned int mw;
        if (fk_value_at(g, t, &r, &mw, &stamp)) {
            values[0].timestamp = stamp;
            values[0].latencyUsec = 0;
            values[0].valueType = 1; /* NVML_VALUE_TYPE_UNSIGNED_INT */
            values[0].nvmlReturn = 0;
            values[0].value.ullVal = 0;
            values[0].value.uiVal = mw;
            pthread_mutex_lock(&g->lock);
            g->native_reads++;
            pthread_mutex_unlock(&g->lock);
            return 0;
        }
    }
    pthread_mutex_lock(&g->lock);
    g->fallback_reads++;
    pthread_mutex_unlock(&g->lock);
    return g->fallback(device, count, values); /* may block (a scripted hang): g is not touched after */
}

/* fk_field_value's layout: its size and its members' offsets. */
int fk_layout(long long *out, int max)
{
    const long long got[] = {
        sizeof(fk_field_value), offsetof(fk_field_value, fieldId), offsetof(fk_field_value, scopeId),
        offsetof(fk_field_value, timestamp), offsetof(fk_field_value, latencyUsec),
        offsetof(fk_field_value, valueType), offsetof(fk_field_value, nvmlReturn),
        offsetof(fk_field_value, value),
    };
    int n = (int)(sizeof got / sizeof got[0]);
    for (int i = 0; i < n && i < max; i++)
        out[i] = got[i];
    return n;
}
