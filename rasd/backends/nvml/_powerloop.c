/*
 * The power sampler's reads on a native thread: one NVML field (instant power, 186) of every GPU,
 * a round every period, each result queued for the daemon to take in batches.
 *
 * Why native: the sampler wakes 12.5 times a second and reads every GPU each time. In Python each
 * round wakes the interpreter with cold caches and walks the binding's wrappers for every read
 * (about 20 us of CPU per GPU on a virtual machine, for a 3.5 us library call); here a round is
 * the library calls themselves. What the readings mean (repeats, rates, units, errors) stays in
 * Python (rasd.telemetry.power), which takes every result in order, as if it had read it itself.
 *
 * No NVML header is needed to build this: the library's nvmlDeviceGetFieldValues comes in as a
 * function pointer (from the binding's own lookup), devices as opaque handles, and the one struct
 * is declared below with nvml.h's layout; pl_layout() reports it so that the loader refuses this
 * code where the binding's layout differs.
 *
 * Hangs: a read that never returns cannot be cancelled. The daemon sees it (pl_busy), abandons
 * this runner (pl_stop) and starts another without that GPU. The abandoned thread, when its call
 * returns, queues nothing more and exits; the runner's memory is freed by whichever of the thread
 * and the daemon lets go of it last (pl_release).
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* nvml.h's nvmlFieldValue_t (its value is the nvmlValue_t union, 8 bytes) */
typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;   /* us, CPU time of the value's update */
    long long latencyUsec;
    int valueType;         /* nvmlValueType_t */
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
} field_value;

typedef int (*get_field_values)(void *device, int count, field_value *values);

/* one read's result, as the daemon takes it */
typedef struct {
    int32_t gpu;      /* position in the runner's device list */
    int32_t ret;      /* nvmlReturn: the call's where it failed, else the entry's */
    int32_t of_call;  /* 1: ret is the whole call's */
    int32_t pad;
    int64_t mono_ns;  /* CLOCK_MONOTONIC when the read returned */
    int64_t wall_ns;  /* CLOCK_REALTIME when the read returned */
    int64_t stamp_us; /* the entry's NVML timestamp */
    double value;     /* the field's value whatever its type (mW for instant power) */
} pl_record;

typedef struct {
    get_field_values fn;
    void **devices;
    atomic_int *enabled;
    int n;
    unsigned int field_id;
    atomic_llong period_ns;
    atomic_int stop;
    atomic_int done;        /* the thread has exited */
    atomic_int refs;        /* the thread and the daemon */
    atomic_int busy_gpu;    /* -1 outside a read */
    atomic_llong busy_since_ns;
    atomic_llong reads;
    pthread_mutex_t lock;   /* guards the queue */
    pl_record *queue;
    int capacity, head, count;
    long long dropped;      /* results lost to a full queue (nobody took them) */
} pl_runner;

static int64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double value_of(const field_value *v) {
    switch (v->valueType) { /* NVML_VALUE_TYPE_* */
    case 0: return v->value.dVal;
    case 1: return (double)v->value.uiVal;
    case 2: return (double)v->value.ulVal;
    case 4: return (double)v->value.sllVal;
    case 5: return (double)v->value.siVal;
    case 6: return (double)v->value.usVal;
    default: return (double)v->value.ullVal;
    }
}

static void release(pl_runner *r) {
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r->queue);
    free(r->enabled);
    free(r->devices);
    free(r);
}

static void push(pl_runner *r, const pl_record *rec) {
    pthread_mutex_lock(&r->lock);
    if (r->count == r->capacity) {
        r->dropped++;
    } else {
        r->queue[(r->head + r->count) % r->capacity] = *rec;
        r->count++;
    }
    pthread_mutex_unlock(&r->lock);
}

static void *run(void *arg) {
    pl_runner *r = arg;
    field_value fv;
    pl_record rec;
    int64_t next = now_ns(CLOCK_MONOTONIC);
    while (!atomic_load(&r->stop)) {
        for (int i = 0; i < r->n; i++) {
            if (atomic_load(&r->stop))
                goto out;
            if (!atomic_load(&r->enabled[i]))
                continue;
            memset(&fv, 0, sizeof fv);
            fv.fieldId = r->field_id;
            atomic_store(&r->busy_gpu, i);
            atomic_store(&r->busy_since_ns, now_ns(CLOCK_MONOTONIC));
            int ret = r->fn(r->devices[i], 1, &fv);
            atomic_store(&r->busy_since_ns, 0);
            atomic_store(&r->busy_gpu, -1);
            if (atomic_load(&r->stop)) /* stopped, or given up while in the call */
                goto out;
            atomic_fetch_add(&r->reads, 1);
            rec.gpu = i;
            rec.ret = ret != 0 ? ret : fv.nvmlReturn;
            rec.of_call = ret != 0;
            rec.pad = 0;
            rec.mono_ns = now_ns(CLOCK_MONOTONIC);
            rec.wall_ns = now_ns(CLOCK_REALTIME);
            rec.stamp_us = fv.timestamp;
            rec.value = rec.ret == 0 ? value_of(&fv) : 0.0;
            push(r, &rec);
        }
        int64_t period = atomic_load(&r->period_ns);
        int64_t now = now_ns(CLOCK_MONOTONIC);
        next += period;
        if (next < now) /* overran: skip the missed rounds instead of bursting */
            next = now + period;
        struct timespec until = {.tv_sec = next / 1000000000LL, .tv_nsec = next % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
        } /* interrupted by a signal: sleep on to the same time */
    }
out:
    atomic_store(&r->done, 1);
    release(r);
    return NULL;
}

/* Start a thread reading ``field_id`` of each enabled device every ``period_ns``; NULL on failure. */
pl_runner *pl_start(get_field_values fn, void *const *devices, const int32_t *enabled, int n,
                    unsigned int field_id, int64_t period_ns, int capacity) {
    if (fn == NULL || n <= 0 || period_ns <= 0 || capacity <= 0)
        return NULL;
    pl_runner *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->devices = calloc((size_t)n, sizeof *r->devices);
    r->enabled = calloc((size_t)n, sizeof *r->enabled);
    r->queue = calloc((size_t)capacity, sizeof *r->queue);
    if (r->devices == NULL || r->enabled == NULL || r->queue == NULL) {
        free(r->devices);
        free(r->enabled);
        free(r->queue);
        free(r);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        r->devices[i] = devices[i];
        atomic_init(&r->enabled[i], enabled[i] != 0);
    }
    r->fn = fn;
    r->n = n;
    r->field_id = field_id;
    r->capacity = capacity;
    atomic_init(&r->period_ns, period_ns);
    atomic_init(&r->refs, 2);
    atomic_init(&r->busy_gpu, -1);
    pthread_mutex_init(&r->lock, NULL);
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, run, r);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        pthread_mutex_destroy(&r->lock);
        free(r->devices);
        free(r->enabled);
        free(r->queue);
        free(r);
        return NULL;
    }
    pthread_setname_np(t, "rasd-power");
    return r;
}

/* Move up to ``max`` queued results into ``out``, oldest first; returns how many. */
int pl_drain(pl_runner *r, pl_record *out, int max) {
    pthread_mutex_lock(&r->lock);
    int k = r->count < max ? r->count : max;
    for (int j = 0; j < k; j++)
        out[j] = r->queue[(r->head + j) % r->capacity];
    r->head = (r->head + k) % r->capacity;
    r->count -= k;
    pthread_mutex_unlock(&r->lock);
    return k;
}

/* The device in a read right now, and since when (CLOCK_MONOTONIC ns); -1 outside a read. */
int pl_busy(pl_runner *r, int64_t *since_ns) {
    int gpu = atomic_load(&r->busy_gpu);
    int64_t since = atomic_load(&r->busy_since_ns);
    /* the same device before and after: the start time is that read's (a read that ended and
     * the next one that began meanwhile would show another device, so none is named) */
    if (atomic_load(&r->busy_gpu) != gpu)
        since = 0;
    *since_ns = since;
    return since != 0 ? gpu : -1;
}

void pl_set_enabled(pl_runner *r, int gpu, int on) {
    if (gpu >= 0 && gpu < r->n)
        atomic_store(&r->enabled[gpu], on != 0);
}

void pl_set_period(pl_runner *r, int64_t period_ns) {
    if (period_ns > 0)
        atomic_store(&r->period_ns, period_ns);
}

/* Reads made, and results lost to a full queue. */
void pl_counts(pl_runner *r, long long *reads, long long *dropped) {
    *reads = atomic_load(&r->reads);
    pthread_mutex_lock(&r->lock);
    *dropped = r->dropped;
    pthread_mutex_unlock(&r->lock);
}

/* Ask the thread to stop: it makes no further read, and a read in flight is queued only if it
 * returned before the thread saw the stop (take the queue once more after pl_done). */
void pl_stop(pl_runner *r) { atomic_store(&r->stop, 1); }

int pl_done(pl_runner *r) { return atomic_load(&r->done); }

/* The daemon lets go of the runner; call once, after pl_stop, and touch it no more. */
void pl_release(pl_runner *r) { release(r); }

/* The layouts this file was built with: the field struct's size and its members' offsets, then
 * the result record's size and its members' offsets. */
int pl_layout(int64_t *out, int max) {
    const int64_t got[] = {
        sizeof(field_value), offsetof(field_value, fieldId), offsetof(field_value, scopeId),
        offsetof(field_value, timestamp), offsetof(field_value, latencyUsec),
        offsetof(field_value, valueType), offsetof(field_value, nvmlReturn),
        offsetof(field_value, value),
        sizeof(pl_record), offsetof(pl_record, gpu), offsetof(pl_record, ret),
        offsetof(pl_record, of_call),
        offsetof(pl_record, mono_ns), offsetof(pl_record, wall_ns), offsetof(pl_record, stamp_us),
        offsetof(pl_record, value),
    };
    int n = (int)(sizeof got / sizeof got[0]);
    for (int i = 0; i < n && i < max; i++)
        out[i] = got[i];
    return n;
}
