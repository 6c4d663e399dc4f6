import CapstanSDK

/// Packs instances onto the fullest nodes that still fit them ("most allocated"), leaving whole
/// nodes free for large instances. Honours cpu, memory and every extended resource requested.
struct Binpack: SchedulerPlugin {
    let configuration: ResourceWeightsConfiguration

    func filter(_ request: FilterRequest) -> [FilterVerdict] {
        ResourceFit.filter(request)
    }

    func score(_ request: ScoreRequest) -> [Int64] {
        request.nodes.map { node in
            Int64((ResourceFit.utilization(after: request.unit, on: node, weights: configuration.resources) * Double(SchedulerAPI.maxNodeScore)).rounded())
        }
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
