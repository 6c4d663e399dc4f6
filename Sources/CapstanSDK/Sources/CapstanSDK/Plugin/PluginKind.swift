import CCapstanPluginABI

/// The kinds of plugin, each an extension point with its own API version.
public enum PluginKind: UInt32, Sendable, Hashable, CaseIterable, CustomStringConvertible, Codable {
    case scheduler = 1
    case storage = 2
    case network = 3
    case loadBalancer = 4
    case runtime = 5

    /// The API version of this kind's protocol that the caller was compiled against.
    /// A host accepts a plugin whose per-kind version it implements (see ``supportedAPIVersions``).
    @_alwaysEmitIntoClient
    public var compiledAPIVersion: UInt32 {
        switch self {
        case .scheduler: 1
        case .storage: 1
        case .network: 1
        case .loadBalancer: 1
        case .runtime: 1
        }
    }

    /// The API versions of this kind that this SDK's protocols can serve.
    public var supportedAPIVersions: ClosedRange<UInt32> { 1...1 }

    /// The name used in `capstan.yaml` (`defaults.scheduler`) and in tables.
    public var description: String {
        switch self {
        case .scheduler: "scheduler"
        case .storage: "storage"
        case .network: "network"
        case .loadBalancer: "loadbalancer"
        case .runtime: "runtime"
        }
    }

    /// The kind named `name` in config (`scheduler`, `storage`, `network`, `loadbalancer`, `runtime`).
    public init?(name: String) {
        guard let kind = PluginKind.allCases.first(where: { $0.description == name }) else { return nil }
        self = kind
    }
}
