/*
 * A Capstan scheduler plugin written in C: "cheapest-first".
 * Feasible when the node has the cpu and memory free; scores nodes by how little memory they
 * have (cheap, small nodes first). Build: ./build.sh   Load: see capstan.yaml.
 */
#include <capstan_plugin.h>
#include <stddef.h>

static void filter(const capstan_c_unit *unit, const capstan_c_node *nodes, int64_t count, int32_t *feasible) {
    for (int64_t i = 0; i < count; i++) {
        const capstan_c_node *n = &nodes[i];
        feasible[i] = !n->unschedulable
            && n->allocatable.cpu_milli - n->requested.cpu_milli >= unit->requests.cpu_milli
            && n->allocatable.memory_bytes - n->requested.memory_bytes >= unit->requests.memory_bytes;
    }
}

static void score(const capstan_c_unit *unit, const capstan_c_node *nodes, int64_t count, int64_t *scores) {
    (void)unit;
    int64_t largest = 1;
    for (int64_t i = 0; i < count; i++)
        if (nodes[i].allocatable.memory_bytes > largest) largest = nodes[i].allocatable.memory_bytes;
    for (int64_t i = 0; i < count; i++)
        scores[i] = 100 - nodes[i].allocatable.memory_bytes * 100 / largest;
}

static const capstan_c_function functions[] = {
    {"filter", "v(pplp)", (void *)filter},
    {"score", "v(pplp)", (void *)score},
};

static int32_t register_plugins(void *context, void *registrar, const capstan_host_api *host) {
    (void)context;
    host->log(registrar, CAPSTAN_LOG_INFO, "cheapest-first ready");
    return host->register_c_plugin(registrar, CAPSTAN_KIND_SCHEDULER, "cheapest-first", functions, 2);
}

static const capstan_kind_decl kinds[] = {{CAPSTAN_KIND_SCHEDULER, 1}};

static const capstan_plugin_info info = {
    .magic = CAPSTAN_PLUGIN_MAGIC,
    .struct_size = sizeof(capstan_plugin_info),
    .sdk_major = 1,
    .sdk_minor = 0,
    .swift_version = NULL,          /* not Swift: the host skips the compiler check */
    .plugin_name = "cheapest-first",
    .plugin_version = "0.1.0",
    .kinds = kinds,
    .kind_count = 1,
    .register_plugins = register_plugins,
    .context = NULL,
};

const capstan_plugin_info *capstan_plugin_v1(void) { return &info; }
