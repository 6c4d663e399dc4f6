import CapstanSDK

/// Best fit: the node with the least resources left after the placement, counting cpu, memory
/// and (on GPU nodes) free GPU, each as a share of the node's capacity.
struct BestFit: SchedulerPlugin {
    var capabilities: SchedulerCapabilities { SchedulerCapabilities(filters: false, scores: true) }

    func score(_ request: ScoreRequest) -> [Int64] {
        let unit = request.unit
        let gpuAsked = (unit.requests.extended[ResourceName.gpu] ?? 0) * 1000 + (unit.requests.extended[ResourceName.gpuMilli] ?? 0)
        return request.nodes.withUnsafeBufferPointer { nodes in request.candidates.map { index in
            var left = 0.0
            var dimensions = 0.0
            func add(_ free: Int64, _ capacity: Int64) {
                guard capacity > 0 else { return }
                left += Double(max(0, free)) / Double(capacity)
                dimensions += 1
            }
            add(nodes[index].allocatable.cpuMilli - nodes[index].requested.cpuMilli - unit.requests.cpuMilli, nodes[index].allocatable.cpuMilli)
            add(nodes[index].allocatable.memoryBytes - nodes[index].requested.memoryBytes - unit.requests.memoryBytes, nodes[index].allocatable.memoryBytes)
            let gpuCount = nodes[index].gpus.count
            if gpuCount > 0 { add(nodes[index].freeGPUMilli - gpuAsked, Int64(gpuCount) * 1000) }
            return dimensions == 0 ? 0 : Int64(((1 - left / dimensions) * Double(SchedulerAPI.maxNodeScore)).rounded())
        } }
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "bestfit", version: "1.0.0", kinds: [.scheduler]) { registrar in
        try registrar.register(scheduler: "bestfit", configuration: NoConfiguration.self) { _, _ in BestFit() }
    }
}
