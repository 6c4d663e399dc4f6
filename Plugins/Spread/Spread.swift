import CapstanSDK

/// Spreads instances onto the emptiest nodes that fit them ("least allocated"), balancing load
/// and limiting what one node failure takes down. Honours cpu, memory and extended resources.
struct Spread: SchedulerPlugin {
    let configuration: ResourceWeightsConfiguration

    /// Resource fit is the framework's own filter; this plugin only scores.
    var capabilities: SchedulerCapabilities { SchedulerCapabilities(filters: false, scores: true) }

    func score(_ request: ScoreRequest) -> [Int64] {
        let weights = ResourceWeights(configuration.resources)
        let unit = request.unit
        return request.nodes.withUnsafeBufferPointer { nodes in request.candidates.map { index in
            Int64(((1 - ResourceFit.utilization(after: unit, on: nodes[index], weights: weights)) * Double(SchedulerAPI.maxNodeScore)).rounded())
        } }
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "spread", version: "1.0.0", kinds: [.scheduler]) { registrar in
        try registrar.register(scheduler: "spread", configuration: ResourceWeightsConfiguration.self) { configuration, _ in
            Spread(configuration: configuration)
        }
    }
}
