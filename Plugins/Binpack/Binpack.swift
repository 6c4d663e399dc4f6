import CapstanSDK

/// Packs instances onto the fullest nodes that still fit them ("most allocated"), leaving whole
/// nodes free for large instances. Honours cpu, memory and every extended resource requested.
struct Binpack: SchedulerPlugin {
    let configuration: ResourceWeightsConfiguration

    /// Resource fit is the framework's own filter; this plugin only scores.
    var capabilities: SchedulerCapabilities { SchedulerCapabilities(filters: false, scores: true) }

    func score(_ request: ScoreRequest) -> [Int64] {
        let weights = ResourceWeights(configuration.resources)
        let unit = request.unit
        return request.nodes.withUnsafeBufferPointer { nodes in request.candidates.map { index in
            Int64((ResourceFit.utilization(after: unit, on: nodes[index], weights: weights) * Double(SchedulerAPI.maxNodeScore)).rounded())
        } }
    }
}

/// The library's one exported symbol: the handshake, and what it registers.
@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "binpack", version: "1.0.0", kinds: [.scheduler]) { registrar in
        try registrar.register(scheduler: "binpack", configuration: ResourceWeightsConfiguration.self) { configuration, _ in
            Binpack(configuration: configuration)
        }
    }
}
