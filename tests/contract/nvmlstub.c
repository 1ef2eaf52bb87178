/*
 * A small NVML library for rasd's contract tests, compiled against NVIDIA's nvml.h (PyPI
 * nvidia-nvml-dev) with -Werror, so every prototype below is checked against the header's. It
 * answers what NVIDIA's mock cannot: power smoothing, errors at nvmlDeviceGetHandleByIndex, an
 * event wait that answers GPU_IS_LOST, and the two numberings of the smoothing field ids. It logs
 * what the C side received, one line per call, to $STUB_LOG for the tests to assert on.
 *
 * Set at nvmlInit:
 *   STUB_GPUS=N             number of GPUs (default 2)
 *   STUB_DRIVER=580.82.07   nvmlSystemGetDriverVersion
 *   STUB_NUMBERING=r575     answer smoothing fields 5 ids higher (256-269), 251 = another counter
 *   STUB_OPEN_ERRORS=1=GPU_IS_LOST,2=NO_PERMISSION   nvmlDeviceGetHandleByIndex answers these
 *   STUB_EVENTS=1:79,lost:1,2:94  the event script, one entry per nvmlEventSetWait_v2 that finds one:
 *                           "G:X" Xid X on GPU G, "lost:G" GPU G falls off the bus (waits on a set
 *                           with G registered answer GPU_IS_LOST from then on)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "nvml.h"

#define MAX_GPUS 16
#define MAX_PROFILES 5
#define MAX_EVENTS 16
#define SMOOTHING_SHIFT_R575 5

struct nvmlDevice_st {
    unsigned int index;
};

struct nvmlEventSet_st {
    int registered[MAX_GPUS];
};

static struct nvmlDevice_st devices[MAX_GPUS];
static struct nvmlEventSet_st sets[8];
static int sets_used;
static unsigned int gpu_count = 2;
static char driver[64] = "580.82.07";
static int r575;
static nvmlReturn_t open_error[MAX_GPUS];
static int lost[MAX_GPUS];
static char events[MAX_EVENTS][16];
static int n_events, next_event;
static int smoothing_enabled[MAX_GPUS];
static unsigned int active_profile[MAX_GPUS];
static double params[MAX_GPUS][MAX_PROFILES][4];
static int pipe_fds[2] = {-1, -1};

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_(const char *fmt, ...)
{
    const char *path = getenv("STUB_LOG");
    if (path == NULL)
        return;
    FILE *f = fopen(path, "a");
    if (f == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

/* Whether n bytes at p can be read, without touching them: write(2) answers EFAULT otherwise. */
static int readable(const void *p, size_t n)
{
    if (p == NULL)
        return 0;
    if (pipe_fds[0] < 0 && pipe(pipe_fds) != 0)
        return 0;
    ssize_t w = write(pipe_fds[1], p, n);
    if (w < 0)
        return errno == EFAULT ? 0 : 1;
    char sink[64];
    while (w > 0) {
        ssize_t r = read(pipe_fds[0], sink, (size_t)w < sizeof sink ? (size_t)w : sizeof sink);
        if (r <= 0)
            break;
        w -= r;
    }
    return 1;
}

static nvmlReturn_t error_named(const char *name)
{
    static const struct { const char *name; nvmlReturn_t code; } names[] = {
        {"GPU_IS_LOST", NVML_ERROR_GPU_IS_LOST},
        {"NO_PERMISSION", NVML_ERROR_NO_PERMISSION},
        {"INSUFFICIENT_POWER", NVML_ERROR_INSUFFICIENT_POWER},
        {"IRQ_ISSUE", NVML_ERROR_IRQ_ISSUE},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0)
            return names[i].code;
    return NVML_ERROR_UNKNOWN;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    const char *v;
    (void)flags;
    if ((v = getenv("STUB_GPUS")) != NULL)
        gpu_count = (unsigned int)atoi(v);
    if (gpu_count > MAX_GPUS)
        gpu_count = MAX_GPUS;
    if ((v = getenv("STUB_DRIVER")) != NULL)
        snprintf(driver, sizeof driver, "%s", v);
    r575 = (v = getenv("STUB_NUMBERING")) != NULL && strcmp(v, "r575") == 0;
    for (unsigned int i = 0; i < MAX_GPUS; i++) {
        devices[i].index = i;
        open_error[i] = NVML_SUCCESS;
        lost[i] = 0;
    }
    if ((v = getenv("STUB_OPEN_ERRORS")) != NULL) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", v);
        for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
            char *eq = strchr(tok, '=');
            if (eq == NULL)
                continue;
            *eq = '\0';
            unsigned int g = (unsigned int)atoi(tok);
            if (g < MAX_GPUS)
                open_error[g] = error_named(eq + 1);
        }
    }
    n_events = next_event = 0;
    if ((v = getenv("STUB_EVENTS")) != NULL) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", v);
        for (char *tok = strtok(buf, ","); tok != NULL && n_events < MAX_EVENTS; tok = strtok(NULL, ","))
            snprintf(events[n_events++], sizeof events[0], "%s", tok);
    }
    logf_("init flags=%u gpus=%u driver=%s numbering=%s", flags, gpu_count, driver, r575 ? "r575" : "current");
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void)
{
    logf_("shutdown");
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    if (!readable(version, length))
        return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(version, length, "%s", driver);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount)
{
    if (!readable(deviceCount, sizeof *deviceCount))
        return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = gpu_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    if (index >= gpu_count || !readable(device, sizeof *device))
        return NVML_ERROR_INVALID_ARGUMENT;
    logf_("open gpu=%u ret=%d", index, (int)open_error[index]);
    if (open_error[index] != NVML_SUCCESS)
        return open_error[index];
    *device = &devices[index];
    return NVML_SUCCESS;
}

static int gpu_of(nvmlDevice_t device)
{
    for (unsigned int i = 0; i < gpu_count; i++)
        if (device == &devices[i])
            return (int)i;
    return -1;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    int g = gpu_of(device);
    if (g < 0 || !readable(index, sizeof *index))
        return NVML_ERROR_INVALID_ARGUMENT;
    if (lost[g])
        return NVML_ERROR_GPU_IS_LOST;
    *index = (unsigned int)g;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    int g = gpu_of(device);
    if (g < 0 || !readable(uuid, length))
        return NVML_ERROR_INVALID_ARGUMENT;
    if (lost[g])
        return NVML_ERROR_GPU_IS_LOST;
    snprintf(uuid, length, "GPU-57ab0000-0000-0000-0000-%012d", g);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    int g = gpu_of(device);
    if (g < 0 || !readable(name, length))
        return NVML_ERROR_INVALID_ARGUMENT;
    if (lost[g])
        return NVML_ERROR_GPU_IS_LOST;
    snprintf(name, length, "NVML stub GPU");
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------------ fields */

static long long now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
}

/* The smoothing field this driver numbering means by id (0: none). */
static unsigned int smoothing_field(unsigned int id)
{
    if (r575) {
        if (id >= NVML_FI_PWR_SMOOTHING_ENABLED + SMOOTHING_SHIFT_R575 &&
            id <= NVML_FI_PWR_SMOOTHING_ACTIVE_PRESET_PROFILE + SMOOTHING_SHIFT_R575)
            return id - SMOOTHING_SHIFT_R575;
        return 0;
    }
    if (id >= NVML_FI_PWR_SMOOTHING_ENABLED && id <= NVML_FI_PWR_SMOOTHING_ACTIVE_PRESET_PROFILE)
        return id;
    return 0;
}

static void answer(nvmlFieldValue_t *v, int g)
{
    unsigned int f = smoothing_field(v->fieldId);
    unsigned int scope = v->scopeId < MAX_PROFILES ? v->scopeId : 0;
    v->timestamp = now_us();
    v->latencyUsec = 0;
    v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
    v->nvmlReturn = NVML_SUCCESS;
    if (r575 && v->fieldId == NVML_FI_PWR_SMOOTHING_ENABLED) {
        v->value.uiVal = 4242; /* R575: 251 is a clock-event counter, not smoothing */
        return;
    }
    switch (f) {
    case NVML_FI_PWR_SMOOTHING_ENABLED:
        v->value.uiVal = (unsigned int)smoothing_enabled[g];
        return;
    case NVML_FI_PWR_SMOOTHING_ACTIVE_PRESET_PROFILE:
        v->value.uiVal = active_profile[g];
        return;
    case NVML_FI_PWR_SMOOTHING_PROFILE_PERCENT_TMP_FLOOR:
        v->value.uiVal = (unsigned int)params[g][scope][NVML_POWER_SMOOTHING_PROFILE_PARAM_PERCENT_TMP_FLOOR];
        return;
    case NVML_FI_PWR_SMOOTHING_PROFILE_RAMP_UP_RATE: /* mW/s, as nvml.h says */
        v->value.uiVal = (unsigned int)params[g][scope][NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_UP_RATE];
        return;
    case NVML_FI_PWR_SMOOTHING_PROFILE_RAMP_DOWN_RATE:
        v->value.uiVal = (unsigned int)params[g][scope][NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_DOWN_RATE];
        return;
    case NVML_FI_PWR_SMOOTHING_PROFILE_RAMP_DOWN_HYST_VAL:
        v->value.uiVal = (unsigned int)params[g][scope][NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_DOWN_HYSTERESIS];
        return;
    default:
        v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
    }
}

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values)
{
    int g = gpu_of(device);
    if (g < 0 || valuesCount < 0 || !readable(values, (size_t)valuesCount * sizeof *values))
        return NVML_ERROR_INVALID_ARGUMENT;
    if (lost[g])
        return NVML_ERROR_GPU_IS_LOST;
    for (int i = 0; i < valuesCount; i++) {
        logf_("field gpu=%d id=%u scope=%u", g, values[i].fieldId, values[i].scopeId);
        answer(&values[i], g);
    }
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------------ power smoothing */

static nvmlReturn_t smoothing_device(nvmlDevice_t device, int *g)
{
    *g = gpu_of(device);
    if (*g < 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    return lost[*g] ? NVML_ERROR_GPU_IS_LOST : NVML_SUCCESS;
}

nvmlReturn_t nvmlDevicePowerSmoothingActivatePresetProfile(nvmlDevice_t device, nvmlPowerSmoothingProfile_t *profile)
{
    int g;
    nvmlReturn_t ret = smoothing_device(device, &g);
    int ok = readable(profile, sizeof *profile);
    logf_("activate gpu=%d pointer_readable=%d version_ok=%d profile=%u", g, ok,
          ok && profile->version == nvmlPowerSmoothingProfile_v1, ok ? profile->profileId : 0u);
    if (ret != NVML_SUCCESS)
        return ret;
    if (!ok)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (profile->version != nvmlPowerSmoothingProfile_v1)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (profile->profileId >= MAX_PROFILES)
        return NVML_ERROR_INVALID_ARGUMENT;
    active_profile[g] = profile->profileId;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDevicePowerSmoothingUpdatePresetProfileParam(nvmlDevice_t device, nvmlPowerSmoothingProfile_t *profile)
{
    int g;
    nvmlReturn_t ret = smoothing_device(device, &g);
    int ok = readable(profile, sizeof *profile);
    logf_("update gpu=%d pointer_readable=%d version_ok=%d profile=%u param=%u value=%.3f", g, ok,
          ok && profile->version == nvmlPowerSmoothingProfile_v1, ok ? profile->profileId : 0u,
          ok ? profile->paramId : 0u, ok ? profile->value : 0.0);
    if (ret != NVML_SUCCESS)
        return ret;
    if (!ok)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (profile->version != nvmlPowerSmoothingProfile_v1)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (profile->profileId >= MAX_PROFILES || profile->paramId > NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_DOWN_HYSTERESIS)
        return NVML_ERROR_INVALID_ARGUMENT;
    params[g][profile->profileId][profile->paramId] = profile->value;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDevicePowerSmoothingSetState(nvmlDevice_t device, nvmlPowerSmoothingState_t *state)
{
    int g;
    nvmlReturn_t ret = smoothing_device(device, &g);
    int ok = readable(state, sizeof *state);
    logf_("state gpu=%d pointer_readable=%d version_ok=%d state=%u", g, ok,
          ok && state->version == nvmlPowerSmoothingState_v1, ok ? (unsigned int)state->state : 0u);
    if (ret != NVML_SUCCESS)
        return ret;
    if (!ok)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (state->version != nvmlPowerSmoothingState_v1)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    smoothing_enabled[g] = state->state == NVML_FEATURE_ENABLED;
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------------ events */

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set)
{
    if (!readable(set, sizeof *set) || sets_used >= 8)
        return NVML_ERROR_INVALID_ARGUMENT;
    memset(&sets[sets_used], 0, sizeof sets[0]);
    *set = &sets[sets_used++];
    logf_("set_create n=%d", sets_used);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set)
{
    int g = gpu_of(device);
    if (g < 0 || set == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (lost[g])
        return NVML_ERROR_GPU_IS_LOST;
    if (eventTypes & nvmlEventTypeXidCriticalError)
        set->registered[g] = 1;
    logf_("register gpu=%d", g);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    (void)timeoutms;
    if (set == NULL || !readable(data, sizeof *data))
        return NVML_ERROR_INVALID_ARGUMENT;
    while (next_event < n_events) {
        const char *e = events[next_event];
        if (strncmp(e, "lost:", 5) == 0) {
            int g = atoi(e + 5);
            if (g >= 0 && g < MAX_GPUS)
                lost[g] = 1;
            next_event++;
            continue;
        }
        break;
    }
    for (unsigned int g = 0; g < gpu_count; g++) {
        if (set->registered[g] && lost[g]) {
            logf_("wait answer=gpu_is_lost gpu=%u", g);
            return NVML_ERROR_GPU_IS_LOST;
        }
    }
    if (next_event < n_events) {
        int g = 0, x = 0;
        if (sscanf(events[next_event], "%d:%d", &g, &x) == 2 && g >= 0 && (unsigned int)g < gpu_count) {
            next_event++;
            if (!set->registered[g])
                return NVML_ERROR_TIMEOUT;
            data->device = &devices[g];
            data->eventType = (unsigned long long)nvmlEventTypeXidCriticalError;
            data->eventData = (unsigned long long)x;
            data->gpuInstanceId = data->computeInstanceId = 0xFFFFFFFFu;
            logf_("wait answer=xid gpu=%d xid=%d", g, x);
            return NVML_SUCCESS;
        }
        next_event++;
    }
    return NVML_ERROR_TIMEOUT;
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set)
{
    if (set == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    logf_("set_free");
    return NVML_SUCCESS;
}
