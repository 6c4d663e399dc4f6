import CapstanSDK

/// Weighted round robin: each ready backend gets connections in turn, `weight` at a time.
struct RoundRobin: LoadBalancerPlugin {
    let pool = BackendPool()

    var capabilities: LoadBalancerCapabilities { LoadBalancerCapabilities(algorithm: "roundrobin") }

    func program(_ request: ProgramServiceRequest) async throws { pool.program(request) }
    func removeService(_ service: String) async throws { pool.remove(service: service) }
    func release(_ picked: PickedBackend) { pool.release(picked) }
    func stats(service: String) -> [BackendStats] { pool.stats(service: service) }

    func pick(_ request: PickRequest) -> PickedBackend? {
        pool.pick(service: request.service) { candidates, picks in
            let total = candidates.reduce(0) { $0 + UInt64(max(1, $1.backend.weight)) }
            var slot = picks % total
            for (index, candidate) in candidates.enumerated() {
                let weight = UInt64(max(1, candidate.backend.weight))
                if slot < weight { return index }
                slot -= weight
            }
            return 0
        }
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "roundrobin", version: "1.0.0", kinds: [.loadBalancer]) { registrar in
        try registrar.register(loadBalancer: "roundrobin", configuration: NoConfiguration.self) { _, _ in RoundRobin() }
    }
}
