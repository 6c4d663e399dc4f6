/*
 * capstan_plugin.h — the C handshake every Capstan plugin exports, whatever its language.
 *
 * A plugin shared library exports one function, `capstan_plugin_v1`, that returns a pointer to a
 * `capstan_plugin_info` it owns (static storage; the host never frees or unloads it). The host
 * reads and checks the version fields *before* it touches any Swift type, then calls `register_plugins`
 * with an opaque registrar:
 *   - Swift plugins use CapstanSDK's `PluginExport`, which fills this struct for them;
 *   - C (or Rust) plugins fill it by hand and register through `host->register_c_plugin`.
 *
 * ABI rules: fields are only ever appended; `struct_size` says how many the plugin knows.
 */
#ifndef CAPSTAN_PLUGIN_H
#define CAPSTAN_PLUGIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** 'C','S','T','N' — the first field of every capstan_plugin_info. */
#define CAPSTAN_PLUGIN_MAGIC 0x4E545343u
/** The exported entry symbol, versioned by name. */
#define CAPSTAN_PLUGIN_ENTRY_V1 "capstan_plugin_v1"

/** Plugin kinds. Each has its own API version (see CAPSTAN_*_API_VERSION). */
enum {
    CAPSTAN_KIND_SCHEDULER = 1,
    CAPSTAN_KIND_STORAGE = 2,
    CAPSTAN_KIND_NETWORK = 3,
    CAPSTAN_KIND_LOAD_BALANCER = 4,
    CAPSTAN_KIND_RUNTIME = 5,
};

/** A kind the library provides and the API version of that kind it implements. */
typedef struct capstan_kind_decl {
    uint32_t kind;
    uint32_t api_version;
} capstan_kind_decl;

/**
 * A function a C plugin offers the host, bound through libffi from its signature.
 * signature: return type, then '(' argument types ')'. Types: v void, i int32, l int64,
 * d double, p pointer. Example: "l(pp)" is `int64_t f(void *, void *)`.
 */
typedef struct capstan_c_function {
    const char *name;
    const char *signature;
    void *function;
} capstan_c_function;

/** Log levels for capstan_host_api.log. */
enum { CAPSTAN_LOG_DEBUG = 0, CAPSTAN_LOG_INFO = 1, CAPSTAN_LOG_WARNING = 2, CAPSTAN_LOG_ERROR = 3 };

/** What the host offers a plugin while it registers. */
typedef struct capstan_host_api {
    uint32_t struct_size;
    /** Registers a plugin written in C: its kind, unique name and functions. 0 on success. */
    int32_t (*register_c_plugin)(void *registrar, uint32_t kind, const char *name,
                                 const capstan_c_function *functions, uint32_t function_count);
    /** Writes a line to the host's log, attributed to the plugin. */
    void (*log)(void *registrar, int32_t level, const char *message);
} capstan_host_api;

/** The handshake. Versions are the ones the plugin was compiled against. */
typedef struct capstan_plugin_info {
    uint32_t magic;              /**< CAPSTAN_PLUGIN_MAGIC */
    uint32_t struct_size;        /**< sizeof(capstan_plugin_info) as the plugin knows it */
    uint16_t sdk_major;
    uint16_t sdk_minor;
    const char *swift_version;   /**< compiler that built it, e.g. "6.3.1"; NULL for C/Rust plugins */
    const char *plugin_name;     /**< the library's name, for tables and messages */
    const char *plugin_version;  /**< the library's own version, e.g. "1.2.0" */
    const capstan_kind_decl *kinds;
    uint32_t kind_count;
    /** Called once after every check passed. Returns 0 on success. */
    int32_t (*register_plugins)(void *context, void *registrar, const capstan_host_api *host);
    void *context;               /**< passed back to register_plugins */
} capstan_plugin_info;


/* ---- Scheduler plugins in C -------------------------------------------------------------
 * A C scheduler registers (with register_c_plugin, kind CAPSTAN_KIND_SCHEDULER) one or both of:
 *   "filter"  signature "v(pplp)": void filter(const capstan_c_unit *unit,
 *                 const capstan_c_node *nodes, int64_t count, int32_t *feasible);  1 = feasible
 *   "score"   signature "v(pplp)": void score(const capstan_c_unit *unit,
 *                 const capstan_c_node *nodes, int64_t count, int64_t *scores);    0...100
 * Both are called once per batch of nodes, from any thread; they must not block.
 */
typedef struct capstan_c_resources {
    int64_t cpu_milli;
    int64_t memory_bytes;
    int64_t gpu;        /* whole GPUs */
    int64_t gpu_milli;  /* a share of one GPU, thousandths */
} capstan_c_resources;

typedef struct capstan_c_unit {
    const char *name;
    capstan_c_resources requests;
} capstan_c_unit;

typedef struct capstan_c_node {
    const char *name;
    capstan_c_resources allocatable;
    capstan_c_resources requested;
    int32_t unschedulable;
} capstan_c_node;

/** The type of the exported entry function. */
typedef const capstan_plugin_info *(*capstan_plugin_entry_v1)(void);

#ifdef __cplusplus
}
#endif

#endif
