import CapstanSDK

/// Least connections: the ready backend with the fewest open connections per unit of weight;
/// ties rotate, so equal backends share new connections evenly.
struct LeastConn: LoadBalancerPlugin {
    let pool = BackendPool()

    var capabilities: LoadBalancerCapabilities { LoadBalancerCapabilities(algorithm: "leastconn") }

    func program(_ request: ProgramServiceRequest) async throws { pool.program(request) }
    func removeService(_ service: String) async throws { pool.remove(service: service) }
    func release(_ picked: PickedBackend) { pool.release(picked) }
    func stats(service: String) -> [BackendStats] { pool.stats(service: service) }

    func pick(_ request: PickRequest) -> PickedBackend? {
        pool.pick(service: request.service) { candidates, picks in
            let start = Int(picks % UInt64(candidates.count))
            var best = start
            for step in 1..<max(1, candidates.count) {
                let index = (start + step) % candidates.count
                // Compare active/weight without division: a.active * b.weight < b.active * a.weight.
                let (a, b) = (candidates[index], candidates[best])
                if a.activeConnections * max(1, b.backend.weight) < b.activeConnections * max(1, a.backend.weight) {
                    best = index
                }
            }
            return best
        }
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "leastconn", version: "1.0.0", kinds: [.loadBalancer]) { registrar in
        try registrar.register(loadBalancer: "leastconn", configuration: NoConfiguration.self) { _, _ in LeastConn() }
    }
}
