/* A C stand-in for nvmlDeviceGetFieldValues, built against NVIDIA's nvml.h, for the native power
 * loop's tests: device handles are 1..n; each read of a device returns (device * 100000 + its
 * read count) mW, stamped with that count. One device can be made to block (a hung driver call)
 * or to answer GPU_IS_LOST. */
#include <stdatomic.h>
#include <time.h>

#include "nvml.h"

static atomic_int hang_device = -1;
static atomic_int lost_device = -1;
static atomic_llong reads[64];

void set_hang(int device) { atomic_store(&hang_device, device); }
void set_lost(int device) { atomic_store(&lost_device, device); }
long long read_count(int device) { return atomic_load(&reads[device]); }

nvmlReturn_t read_fields(nvmlDevice_t device, int count, nvmlFieldValue_t *values) {
    int d = (int)(long)device;
    if (d <= 0 || d >= 64)
        return NVML_ERROR_INVALID_ARGUMENT;
    while (atomic_load(&hang_device) == d) {
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
    }
    long long n = atomic_fetch_add(&reads[d], 1) + 1;
    for (int i = 0; i < count; i++) {
        if (atomic_load(&lost_device) == d) {
            values[i].nvmlReturn = NVML_ERROR_GPU_IS_LOST;
            continue;
        }
        values[i].nvmlReturn = NVML_SUCCESS;
        values[i].valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
        values[i].value.uiVal = (unsigned int)(d * 100000 + n);
        values[i].timestamp = n;
    }
    return NVML_SUCCESS;
}
