/*
 * A fake libnvidia-ml.so.1 for darkroom's tests: no GPU, no driver.
 *
 * Every NVML entry point below re-reads `fake_nvml.conf`, found in the same
 * directory as this loaded .so (dladdr on one of our own functions), so each
 * test scripts its own copy of the library through its own file, and can edit
 * the file between calls to change the readings. No environment variables.
 * See README.md beside this file for the format.
 *
 * nvml.h is deliberately NOT included: its macros rename nvmlInit to
 * nvmlInit_v2 and so on, and we must export the exact names. The types below
 * are declared by hand with the layouts nvml-wrapper-sys binds (see README).
 *
 * Build: cc -shared -fPIC -O1 -o DIR/libnvidia-ml.so.1 tests/fake_nvml/fake_nvml.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- NVML ABI ---------------------------------------------------------- */

typedef unsigned int nvmlReturn_t;

#define NVML_SUCCESS 0u
#define NVML_ERROR_UNINITIALIZED 1u
#define NVML_ERROR_INVALID_ARGUMENT 2u
#define NVML_ERROR_NOT_SUPPORTED 3u
#define NVML_ERROR_NO_PERMISSION 4u
#define NVML_ERROR_ALREADY_INITIALIZED 5u
#define NVML_ERROR_NOT_FOUND 6u
#define NVML_ERROR_INSUFFICIENT_SIZE 7u
#define NVML_ERROR_INSUFFICIENT_POWER 8u
#define NVML_ERROR_DRIVER_NOT_LOADED 9u
#define NVML_ERROR_TIMEOUT 10u
#define NVML_ERROR_IRQ_ISSUE 11u
#define NVML_ERROR_LIBRARY_NOT_FOUND 12u
#define NVML_ERROR_FUNCTION_NOT_FOUND 13u
#define NVML_ERROR_CORRUPTED_INFOROM 14u
#define NVML_ERROR_GPU_IS_LOST 15u
#define NVML_ERROR_RESET_REQUIRED 16u
#define NVML_ERROR_OPERATING_SYSTEM 17u
#define NVML_ERROR_LIB_RM_VERSION_MISMATCH 18u
#define NVML_ERROR_IN_USE 19u
#define NVML_ERROR_MEMORY 20u
#define NVML_ERROR_ARGUMENT_VERSION_MISMATCH 25u
#define NVML_ERROR_NO_DATA 21u
#define NVML_ERROR_UNKNOWN 999u

/* nvmlClockType_t */
#define NVML_CLOCK_GRAPHICS 0u
#define NVML_CLOCK_SM 1u
#define NVML_CLOCK_MEM 2u
#define NVML_CLOCK_VIDEO 3u

/* nvmlTemperatureSensors_t */
#define NVML_TEMPERATURE_GPU 0u

/* NVML_VALUE_NOT_AVAILABLE as an unsigned long long: nvml-wrapper maps it to
 * UsedGpuMemory::Unavailable. */
#define NVML_VALUE_NOT_AVAILABLE_ULL 0xFFFFFFFFFFFFFFFFULL
/* gpuInstanceId / computeInstanceId when MIG is off. */
#define NVML_NO_INSTANCE_ID 0xFFFFFFFFu

typedef struct fake_device *nvmlDevice_t; /* opaque to the caller */

typedef struct { /* nvmlMemory_t, 24 bytes */
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct { /* nvmlMemory_v2_t, 40 bytes */
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;

typedef struct { /* nvmlUtilization_t, 8 bytes */
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

typedef struct { /* nvmlProcessInfo_v1_t, 16 bytes (unversioned entry point) */
    unsigned int pid;
    unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

typedef struct { /* nvmlProcessInfo_t == nvmlProcessInfo_v2_t, 24 bytes (_v2, _v3) */
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

typedef struct { /* nvmlPciInfo_t, 68 bytes (nvmlDeviceGetPciInfo_v3) */
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

_Static_assert(sizeof(nvmlMemory_t) == 24, "nvmlMemory_t layout");
_Static_assert(sizeof(nvmlMemory_v2_t) == 40, "nvmlMemory_v2_t layout");
_Static_assert(offsetof(nvmlMemory_v2_t, total) == 8, "nvmlMemory_v2_t layout");
_Static_assert(sizeof(nvmlUtilization_t) == 8, "nvmlUtilization_t layout");
_Static_assert(sizeof(nvmlProcessInfo_v1_t) == 16, "nvmlProcessInfo_v1_t layout");
_Static_assert(sizeof(nvmlProcessInfo_t) == 24, "nvmlProcessInfo_t layout");
_Static_assert(offsetof(nvmlProcessInfo_t, gpuInstanceId) == 16, "nvmlProcessInfo_t layout");
_Static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t layout");

/* ---- the scripted state ------------------------------------------------ */

#define MAX_DEVICES 8
#define MAX_PROCS 64
#define STR_LEN 128

/* One numeric reading: its value, or the NVML code the call returns instead
 * ("notsupported" -> NOT_SUPPORTED, "error:N" -> N). */
struct field {
    int set;
    nvmlReturn_t rc;
    unsigned long long v;
};

struct proc {
    unsigned int pid;
    unsigned long long used;
};

struct gpu {
    char name[STR_LEN];
    char uuid[STR_LEN];
    struct field mem_total, mem_used, mem_reserved;
    struct field util_gpu, util_mem;
    struct field temp;
    struct field power_mw, power_limit_mw, power_mgmt_limit_mw;
    struct field fan, num_fans;
    struct field clock_graphics, clock_sm, clock_mem, clock_video;
    struct field pci_device_id;
    int lost;
    unsigned int nprocs;
    struct proc procs[MAX_PROCS];
};

struct conf {
    nvmlReturn_t init_error;
    char driver[STR_LEN];
    char nvml_version[STR_LEN];
    struct field cuda;
    unsigned int count;
    struct gpu gpu[MAX_DEVICES];
};

/* What a handle points at. Only the index matters: readings come from the
 * conf, re-read on each call. */
struct fake_device {
    unsigned int index;
};

static struct fake_device devices[MAX_DEVICES] = {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned int init_refcount; /* guarded by lock */
static unsigned long long calls;   /* atomic */

static pthread_once_t conf_path_once = PTHREAD_ONCE_INIT;
static char conf_path[PATH_MAX];

/* ---- conf file --------------------------------------------------------- */

nvmlReturn_t nvmlInit_v2(void);

static void find_conf_path(void) {
    Dl_info info;
    const char *dir_end;
    size_t dir_len;

    memset(&info, 0, sizeof info);
    if (dladdr((void *)(uintptr_t)&nvmlInit_v2, &info) == 0 || info.dli_fname == NULL) {
        snprintf(conf_path, sizeof conf_path, "fake_nvml.conf");
        return;
    }
    dir_end = strrchr(info.dli_fname, '/');
    if (dir_end == NULL) {
        snprintf(conf_path, sizeof conf_path, "fake_nvml.conf");
        return;
    }
    dir_len = (size_t)(dir_end - info.dli_fname);
    snprintf(conf_path, sizeof conf_path, "%.*s/fake_nvml.conf", (int)dir_len, info.dli_fname);
}

static char *trim(char *s) {
    char *end;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

static int parse_ull(const char *s, unsigned long long *out) {
    char *end;
    unsigned long long v;
    if (*s == '\0' || *s == '-')
        return 0;
    v = strtoull(s, &end, 10);
    if (*trim(end) != '\0')
        return 0;
    *out = v;
    return 1;
}

static void parse_field(struct field *f, const char *value) {
    unsigned long long v;
    f->set = 1;
    f->rc = NVML_SUCCESS;
    f->v = 0;
    if (strcmp(value, "notsupported") == 0) {
        f->rc = NVML_ERROR_NOT_SUPPORTED;
    } else if (strncmp(value, "error:", 6) == 0 && parse_ull(value + 6, &v)) {
        f->rc = (nvmlReturn_t)v;
    } else if (parse_ull(value, &v)) {
        f->v = v;
    } else {
        f->set = 0; /* unparsable: as if absent */
    }
}

static void copy_str(char *dst, const char *src) {
    snprintf(dst, STR_LEN, "%s", src);
}

/* "1234:2147483648,5678:1073741824"; "pid:na" or a bare pid = memory n/a. */
static void parse_procs(struct gpu *g, char *value) {
    char *save = NULL;
    char *item;
    g->nprocs = 0;
    for (item = strtok_r(value, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *colon;
        unsigned long long pid, used = NVML_VALUE_NOT_AVAILABLE_ULL;
        item = trim(item);
        if (*item == '\0' || g->nprocs >= MAX_PROCS)
            continue;
        colon = strchr(item, ':');
        if (colon != NULL) {
            char *mem = trim(colon + 1);
            *colon = '\0';
            if (strcmp(mem, "na") != 0 && !parse_ull(mem, &used))
                continue;
        }
        if (!parse_ull(trim(item), &pid))
            continue;
        g->procs[g->nprocs].pid = (unsigned int)pid;
        g->procs[g->nprocs].used = used;
        g->nprocs++;
    }
}

static void set_gpu_key(struct gpu *g, const char *key, char *value) {
    static const struct {
        const char *key;
        size_t offset;
    } fields[] = {
        {"mem_total", offsetof(struct gpu, mem_total)},
        {"mem_used", offsetof(struct gpu, mem_used)},
        {"mem_reserved", offsetof(struct gpu, mem_reserved)},
        {"util_gpu", offsetof(struct gpu, util_gpu)},
        {"util_mem", offsetof(struct gpu, util_mem)},
        {"temp", offsetof(struct gpu, temp)},
        {"power_mw", offsetof(struct gpu, power_mw)},
        {"power_limit_mw", offsetof(struct gpu, power_limit_mw)},
        {"power_mgmt_limit_mw", offsetof(struct gpu, power_mgmt_limit_mw)},
        {"fan", offsetof(struct gpu, fan)},
        {"num_fans", offsetof(struct gpu, num_fans)},
        {"clock_graphics", offsetof(struct gpu, clock_graphics)},
        {"clock_sm", offsetof(struct gpu, clock_sm)},
        {"clock_mem", offsetof(struct gpu, clock_mem)},
        {"clock_video", offsetof(struct gpu, clock_video)},
        {"pci_device_id", offsetof(struct gpu, pci_device_id)},
    };
    size_t i;
    if (strcmp(key, "name") == 0) {
        copy_str(g->name, value);
    } else if (strcmp(key, "uuid") == 0) {
        copy_str(g->uuid, value);
    } else if (strcmp(key, "lost") == 0) {
        g->lost = strcmp(value, "0") != 0 && *value != '\0';
    } else if (strcmp(key, "procs") == 0) {
        parse_procs(g, value);
    } else {
        for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            if (strcmp(key, fields[i].key) == 0) {
                parse_field((struct field *)((char *)g + fields[i].offset), value);
                return;
            }
        }
    }
}

static void set_key(struct conf *c, const char *key, char *value) {
    unsigned long long v;
    if (strcmp(key, "init_error") == 0) {
        if (parse_ull(value, &v))
            c->init_error = (nvmlReturn_t)v;
    } else if (strcmp(key, "driver") == 0) {
        copy_str(c->driver, value);
    } else if (strcmp(key, "nvml_version") == 0) {
        copy_str(c->nvml_version, value);
    } else if (strcmp(key, "cuda") == 0) {
        parse_field(&c->cuda, value);
    } else if (strcmp(key, "count") == 0) {
        if (parse_ull(value, &v))
            c->count = v > MAX_DEVICES ? MAX_DEVICES : (unsigned int)v;
    } else if (strncmp(key, "gpu", 3) == 0 && key[3] >= '0' && key[3] < '0' + MAX_DEVICES &&
               key[4] == '.') {
        set_gpu_key(&c->gpu[key[3] - '0'], key + 5, value);
    }
    /* anything else: ignored */
}

static void load_conf(struct conf *c) {
    FILE *f;
    char line[8192];
    unsigned int i;

    pthread_once(&conf_path_once, find_conf_path);
    memset(c, 0, sizeof *c);
    copy_str(c->driver, "550.54.14");

    f = fopen(conf_path, "r");
    if (f != NULL) {
        while (fgets(line, sizeof line, f) != NULL) {
            char *hash = strchr(line, '#');
            char *eq, *key;
            if (hash != NULL)
                *hash = '\0';
            eq = strchr(line, '=');
            if (eq == NULL)
                continue;
            *eq = '\0';
            key = trim(line);
            set_key(c, key, trim(eq + 1));
        }
        fclose(f);
    }

    /* Defaults that depend on other keys. */
    if (c->nvml_version[0] == '\0')
        snprintf(c->nvml_version, sizeof c->nvml_version, "12.%.100s", c->driver);
    if (!c->cuda.set) {
        c->cuda.set = 1;
        c->cuda.v = 12040;
    }
    for (i = 0; i < MAX_DEVICES; i++) {
        struct gpu *g = &c->gpu[i];
        if (g->name[0] == '\0')
            snprintf(g->name, sizeof g->name, "NVIDIA Fake GPU %u", i);
        if (g->uuid[0] == '\0')
            snprintf(g->uuid, sizeof g->uuid, "GPU-00000000-0000-0000-0000-%012u", i);
        if (!g->clock_graphics.set)
            g->clock_graphics = g->clock_sm;
        if (!g->power_mgmt_limit_mw.set)
            g->power_mgmt_limit_mw = g->power_limit_mw;
        if (!g->num_fans.set) {
            g->num_fans.set = 1;
            g->num_fans.v = (g->fan.set && g->fan.rc != NVML_SUCCESS) ? 0 : 1;
        }
        if (!g->pci_device_id.set)
            g->pci_device_id.v = 0x268410DEu;
    }
}

/* ---- common checks ----------------------------------------------------- */

static void count_call(void) {
    __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
}

static int initialized(void) {
    int up;
    pthread_mutex_lock(&lock);
    up = init_refcount > 0;
    pthread_mutex_unlock(&lock);
    return up;
}

/* Loads the conf and checks the library is initialized. */
static nvmlReturn_t enter(struct conf *c) {
    count_call();
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    load_conf(c);
    return NVML_SUCCESS;
}

/* As enter(), and resolves a device handle: UNINITIALIZED, INVALID_ARGUMENT
 * for a handle that is not ours or past the current count, GPU_IS_LOST. */
static nvmlReturn_t enter_device(struct conf *c, nvmlDevice_t d, struct gpu **g) {
    nvmlReturn_t rc = enter(c);
    if (rc != NVML_SUCCESS)
        return rc;
    if (d < &devices[0] || d >= &devices[MAX_DEVICES] || d->index >= c->count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *g = &c->gpu[d->index];
    if ((*g)->lost)
        return NVML_ERROR_GPU_IS_LOST;
    return NVML_SUCCESS;
}

static nvmlReturn_t put_str(char *buf, unsigned int len, const char *s) {
    size_t need = strlen(s) + 1;
    if (buf == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (len < need)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(buf, s, need);
    return NVML_SUCCESS;
}

static nvmlReturn_t put_uint(unsigned int *out, const struct field *f) {
    if (out == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (f->rc != NVML_SUCCESS)
        return f->rc;
    *out = (unsigned int)f->v;
    return NVML_SUCCESS;
}

/* ---- init / shutdown / errors ------------------------------------------ */

nvmlReturn_t nvmlInit_v2(void) {
    struct conf c;
    count_call();
    load_conf(&c);
    if (c.init_error != NVML_SUCCESS)
        return c.init_error;
    pthread_mutex_lock(&lock);
    init_refcount++;
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit(void) {
    return nvmlInit_v2();
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

nvmlReturn_t nvmlShutdown(void) {
    nvmlReturn_t rc = NVML_SUCCESS;
    count_call();
    pthread_mutex_lock(&lock);
    if (init_refcount == 0)
        rc = NVML_ERROR_UNINITIALIZED;
    else
        init_refcount--;
    pthread_mutex_unlock(&lock);
    return rc;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED: return "Already Initialized";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER: return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_IRQ_ISSUE: return "Interrupt Request Issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM: return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED: return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM: return "The operating system has blocked the request.";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "RM has detected an NVML/RM version mismatch.";
    case NVML_ERROR_IN_USE: return "In use by another client";
    case NVML_ERROR_MEMORY: return "Insufficient Memory";
    case NVML_ERROR_NO_DATA: return "No data";
    default: return "Unknown Error";
    }
}

/* ---- system ------------------------------------------------------------ */

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    struct conf c;
    nvmlReturn_t rc = enter(&c);
    return rc != NVML_SUCCESS ? rc : put_str(version, length, c.driver);
}

nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    struct conf c;
    nvmlReturn_t rc = enter(&c);
    return rc != NVML_SUCCESS ? rc : put_str(version, length, c.nvml_version);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion) {
    struct conf c;
    nvmlReturn_t rc = enter(&c);
    if (rc != NVML_SUCCESS)
        return rc;
    if (cudaDriverVersion == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (c.cuda.rc != NVML_SUCCESS)
        return c.cuda.rc;
    *cudaDriverVersion = (int)c.cuda.v;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion) {
    return nvmlSystemGetCudaDriverVersion(cudaDriverVersion);
}

/* ---- enumeration ------------------------------------------------------- */

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
    struct conf c;
    nvmlReturn_t rc = enter(&c);
    if (rc != NVML_SUCCESS)
        return rc;
    if (deviceCount == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = c.count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount) {
    return nvmlDeviceGetCount_v2(deviceCount);
}

/* A lost GPU still has a handle: the calls made with it fail. */
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    struct conf c;
    nvmlReturn_t rc = enter(&c);
    if (rc != NVML_SUCCESS)
        return rc;
    if (device == NULL || index >= c.count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &devices[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    struct conf c;
    unsigned int i;
    nvmlReturn_t rc = enter(&c);
    if (rc != NVML_SUCCESS)
        return rc;
    if (uuid == NULL || device == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (i = 0; i < c.count; i++) {
        if (strcmp(c.gpu[i].uuid, uuid) == 0) {
            *device = &devices[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

/* ---- per device -------------------------------------------------------- */

/* The start of every per-device call: the script read, the device checked (and
 * not lost), the out-pointer checked. Declares `c`, `g` and `rc`. */
#define ENTER_DEVICE(device, out)                   \
    struct conf c;                                  \
    struct gpu *g;                                  \
    nvmlReturn_t rc = enter_device(&c, device, &g); \
    (void)c;                                        \
    if (rc != NVML_SUCCESS)                         \
        return rc;                                  \
    if ((out) == NULL)                              \
        return NVML_ERROR_INVALID_ARGUMENT

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    ENTER_DEVICE(device, index);
    *index = device->index;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    struct conf c;
    struct gpu *g;
    nvmlReturn_t rc = enter_device(&c, device, &g);
    return rc != NVML_SUCCESS ? rc : put_str(name, length, g->name);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    struct conf c;
    struct gpu *g;
    nvmlReturn_t rc = enter_device(&c, device, &g);
    return rc != NVML_SUCCESS ? rc : put_str(uuid, length, g->uuid);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    ENTER_DEVICE(device, pci);
    memset(pci, 0, sizeof *pci);
    pci->domain = 0;
    pci->bus = device->index + 1;
    pci->device = 0;
    pci->pciDeviceId = (unsigned int)g->pci_device_id.v;
    pci->pciSubSystemId = 0;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", pci->domain, pci->bus,
             pci->device);
    snprintf(pci->busId, sizeof pci->busId, "%08X:%02X:%02X.0", pci->domain, pci->bus, pci->device);
    return NVML_SUCCESS;
}

static unsigned long long mem_free(const struct gpu *g) {
    unsigned long long taken = g->mem_used.v + g->mem_reserved.v;
    return taken >= g->mem_total.v ? 0 : g->mem_total.v - taken;
}

static nvmlReturn_t mem_rc(const struct gpu *g) {
    if (g->mem_total.rc != NVML_SUCCESS)
        return g->mem_total.rc;
    if (g->mem_used.rc != NVML_SUCCESS)
        return g->mem_used.rc;
    return g->mem_reserved.rc;
}

/* v1: the reserved part counts as used (as the real v1 reports it). */
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    ENTER_DEVICE(device, memory);
    if ((rc = mem_rc(g)) != NVML_SUCCESS)
        return rc;
    memory->total = g->mem_total.v;
    memory->free = mem_free(g);
    memory->used = g->mem_used.v + g->mem_reserved.v;
    return NVML_SUCCESS;
}

/* v2: like the real driver, only NVML_STRUCT_VERSION(Memory, 2) =
 * sizeof | 2 << 24 = 0x02000028 is accepted. */
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    ENTER_DEVICE(device, memory);
    if (memory->version != ((unsigned int)sizeof(nvmlMemory_v2_t) | (2u << 24)))
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if ((rc = mem_rc(g)) != NVML_SUCCESS)
        return rc;
    memory->total = g->mem_total.v;
    memory->reserved = g->mem_reserved.v;
    memory->used = g->mem_used.v;
    memory->free = mem_free(g);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    ENTER_DEVICE(device, utilization);
    if (g->util_gpu.rc != NVML_SUCCESS)
        return g->util_gpu.rc;
    if (g->util_mem.rc != NVML_SUCCESS)
        return g->util_mem.rc;
    utilization->gpu = (unsigned int)g->util_gpu.v;
    utilization->memory = (unsigned int)g->util_mem.v;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, unsigned int sensorType,
                                      unsigned int *temp) {
    struct conf c;
    struct gpu *g;
    nvmlReturn_t rc = enter_device(&c, device, &g);
    if (rc != NVML_SUCCESS)
        return rc;
    if (sensorType != NVML_TEMPERATURE_GPU)
        return NVML_ERROR_INVALID_ARGUMENT;
    return put_uint(temp, &g->temp);
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    struct conf c;
    struct gpu *g;
    nvmlReturn_t rc = enter_device(&c, device, &g);
    return rc != NVML_SUCCESS ? rc : put_uint(power, &g->power_mw);
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    struct conf c;
    struct gpu *g;
    nvmlReturn_t rc = enter_device(&c, device, &g);
    return rc != NVML_SUCCESS ? rc : put_uint(limit, &g->power_limit_mw);
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit) {
    struct conf c;
    struct gpu *g;
    nvmlReturn_t rc = enter_device(&c, device, &g);
    return rc != NVML_SUCCESS ? rc : put_uint(limit, &g->power_mgmt_limit_mw);
}

nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t device, unsigned int *numFans) {
    struct conf c;
    struct gpu *g;
    nvmlReturn_t rc = enter_device(&c, device, &g);
    return rc != NVML_SUCCESS ? rc : put_uint(numFans, &g->num_fans);
}

nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t device, unsigned int fan, unsigned int *speed) {
    struct conf c;
    struct gpu *g;
    nvmlReturn_t rc = enter_device(&c, device, &g);
    if (rc != NVML_SUCCESS)
        return rc;
    if (g->fan.rc != NVML_SUCCESS)
        return g->fan.rc;
    if (g->num_fans.rc == NVML_SUCCESS && fan >= g->num_fans.v)
        return NVML_ERROR_INVALID_ARGUMENT;
    return put_uint(speed, &g->fan);
}

nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed) {
    return nvmlDeviceGetFanSpeed_v2(device, 0, speed);
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, unsigned int type, unsigned int *clock) {
    struct conf c;
    struct gpu *g;
    nvmlReturn_t rc = enter_device(&c, device, &g);
    if (rc != NVML_SUCCESS)
        return rc;
    switch (type) {
    case NVML_CLOCK_GRAPHICS: return put_uint(clock, &g->clock_graphics);
    case NVML_CLOCK_SM: return put_uint(clock, &g->clock_sm);
    case NVML_CLOCK_MEM: return put_uint(clock, &g->clock_mem);
    case NVML_CLOCK_VIDEO: return put_uint(clock, &g->clock_video);
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
}

/* NVML's two-call protocol: with infos NULL or *count too small, *count is set
 * to the number of processes and INSUFFICIENT_SIZE returned; with no processes
 * the answer is SUCCESS and *count = 0 whatever was passed. */
static nvmlReturn_t procs_prologue(nvmlDevice_t device, unsigned int *count, const void *infos,
                                   struct conf *c, struct gpu **g) {
    nvmlReturn_t rc = enter_device(c, device, g);
    if (rc != NVML_SUCCESS)
        return rc;
    if (count == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if ((*g)->nprocs == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (infos == NULL || *count < (*g)->nprocs) {
        *count = (*g)->nprocs;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    *count = (*g)->nprocs;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                     nvmlProcessInfo_t *infos) {
    struct conf c;
    struct gpu *g;
    unsigned int i;
    nvmlReturn_t rc = procs_prologue(device, infoCount, infos, &c, &g);
    if (rc != NVML_SUCCESS || infos == NULL)
        return rc;
    for (i = 0; i < g->nprocs; i++) {
        infos[i].pid = g->procs[i].pid;
        infos[i].usedGpuMemory = g->procs[i].used;
        infos[i].gpuInstanceId = NVML_NO_INSTANCE_ID;
        infos[i].computeInstanceId = NVML_NO_INSTANCE_ID;
    }
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *infoCount,
                                                     nvmlProcessInfo_t *infos) {
    return nvmlDeviceGetComputeRunningProcesses_v3(device, infoCount, infos);
}

/* The unversioned symbol is the v1 ABI: 16-byte entries. */
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *infoCount,
                                                  nvmlProcessInfo_v1_t *infos) {
    struct conf c;
    struct gpu *g;
    unsigned int i;
    nvmlReturn_t rc = procs_prologue(device, infoCount, infos, &c, &g);
    if (rc != NVML_SUCCESS || infos == NULL)
        return rc;
    for (i = 0; i < g->nprocs; i++) {
        infos[i].pid = g->procs[i].pid;
        infos[i].usedGpuMemory = g->procs[i].used;
    }
    return NVML_SUCCESS;
}

/* No graphics contexts on a fake card. */
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                      nvmlProcessInfo_t *infos) {
    struct conf c;
    struct gpu *g;
    nvmlReturn_t rc = enter_device(&c, device, &g);
    (void)infos;
    if (rc != NVML_SUCCESS)
        return rc;
    if (infoCount == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *infoCount = 0;
    return NVML_SUCCESS;
}

/* ---- test hooks (not NVML) --------------------------------------------- */

/* Number of NVML calls made into this copy of the library. */
unsigned long long fake_nvml_call_count(void) {
    return __atomic_load_n(&calls, __ATOMIC_RELAXED);
}

/* The current init refcount (0 = not initialized). */
unsigned int fake_nvml_init_refcount(void) {
    unsigned int n;
    pthread_mutex_lock(&lock);
    n = init_refcount;
    pthread_mutex_unlock(&lock);
    return n;
}
