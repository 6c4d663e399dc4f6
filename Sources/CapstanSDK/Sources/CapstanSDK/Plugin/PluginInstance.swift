import CapstanCore
/// A created plugin, by kind.
public enum PluginInstance: Sendable {
    case scheduler(any SchedulerPlugin)
    case storage(any StorageProvisioner)
    case network(any NetworkPlugin)
    case loadBalancer(any LoadBalancerPlugin)
    case runtime(any RuntimePlugin)

    public var kind: PluginKind {
        switch self {
        case .scheduler: .scheduler
        case .storage: .storage
        case .network: .network
        case .loadBalancer: .loadBalancer
        case .runtime: .runtime
        }
    }
}

/// One plugin a library registered: its kind and name, and how to create it once the host has
/// decoded and validated its configuration.
public struct PluginRegistration: Sendable {
    public let kind: PluginKind
    public let name: String
    /// The Swift type of its configuration, for `capstan plugins inspect`.
    public let configurationType: String
    /// Decodes and validates the configuration, then creates the plugin.
    public let make: @Sendable (PluginConfigurationInput, PluginContext) throws -> PluginInstance

    public init(kind: PluginKind, name: String, configurationType: String, make: @escaping @Sendable (PluginConfigurationInput, PluginContext) throws -> PluginInstance) {
        self.kind = kind
        self.name = name
        self.configurationType = configurationType
        self.make = make
    }
}
