import CapstanCore
import Synchronization

/// What a plugin library registers its plugins with, during the host's `register` call.
///
/// A library may register several plugins, of the kinds it declared in its handshake. Names
/// must be unique in the host; the host refuses duplicates. Registering creates nothing: the host
/// creates each plugin later, after its configuration decoded and validated.
public final class PluginRegistrar: Sendable {
    /// The kinds the library declared in its handshake; registering another kind is an error.
    public let declaredKinds: Set<PluginKind>
    private let registered = Mutex<[PluginRegistration]>([])

    public init(declaredKinds: Set<PluginKind>) {
        self.declaredKinds = declaredKinds
    }

    /// Everything registered so far, in order.
    public var registrations: [PluginRegistration] { registered.withLock { $0 } }

    /// Registers a plugin of any kind. The typed `register(scheduler:…)` family calls this.
    /// - Throws: ``PluginError`` (``PluginError/Code/invalidArgument``) for an undeclared kind,
    ///   a name that is not a DNS label, or a name this library already registered.
    public func add(_ registration: PluginRegistration) throws {
        guard declaredKinds.contains(registration.kind) else {
            throw PluginError(.invalidArgument, "plugin \"\(registration.name)\" is a \(registration.kind) plugin, but the library declared only \(declaredKinds.map(\.description).sorted().joined(separator: ", ")) in its handshake")
        }
        if let problem = DNSLabel.problem(with: registration.name) {
            throw PluginError(.invalidArgument, "plugin name \(problem)")
        }
        try registered.withLock { registered in
            if registered.contains(where: { $0.name == registration.name }) {
                throw PluginError(.alreadyExists, "plugin \"\(registration.name)\" is registered twice by the same library")
            }
            registered.append(registration)
        }
    }

    private func add<Configuration: PluginConfiguration>(_ kind: PluginKind, _ name: String, _ configuration: Configuration.Type, _ make: @escaping @Sendable (Configuration, PluginContext) throws -> PluginInstance) throws {
        try add(PluginRegistration(kind: kind, name: name, configurationType: String(describing: configuration)) { input, context in
            try make(try input.decode(Configuration.self), context)
        })
    }

    /// Registers a scheduler plugin.
    /// - Parameters:
    ///   - name: unique in the host; what `capstan.yaml` and workloads name it by.
    ///   - configuration: the type `plugins[].config` decodes into.
    ///   - make: creates the plugin from its validated configuration.
    public func register<Configuration: PluginConfiguration>(scheduler name: String, configuration: Configuration.Type, make: @escaping @Sendable (Configuration, PluginContext) throws -> any SchedulerPlugin) throws {
        try add(.scheduler, name, configuration) { .scheduler(try make($0, $1)) }
    }

    /// Registers a storage provisioner. See ``register(scheduler:configuration:make:)``.
    public func register<Configuration: PluginConfiguration>(storage name: String, configuration: Configuration.Type, make: @escaping @Sendable (Configuration, PluginContext) throws -> any StorageProvisioner) throws {
        try add(.storage, name, configuration) { .storage(try make($0, $1)) }
    }

    /// Registers a network plugin. See ``register(scheduler:configuration:make:)``.
    public func register<Configuration: PluginConfiguration>(network name: String, configuration: Configuration.Type, make: @escaping @Sendable (Configuration, PluginContext) throws -> any NetworkPlugin) throws {
        try add(.network, name, configuration) { .network(try make($0, $1)) }
    }

    /// Registers a load-balancer plugin. See ``register(scheduler:configuration:make:)``.
    public func register<Configuration: PluginConfiguration>(loadBalancer name: String, configuration: Configuration.Type, make: @escaping @Sendable (Configuration, PluginContext) throws -> any LoadBalancerPlugin) throws {
        try add(.loadBalancer, name, configuration) { .loadBalancer(try make($0, $1)) }
    }

    /// Registers a runtime plugin. See ``register(scheduler:configuration:make:)``.
    public func register<Configuration: PluginConfiguration>(runtime name: String, configuration: Configuration.Type, make: @escaping @Sendable (Configuration, PluginContext) throws -> any RuntimePlugin) throws {
        try add(.runtime, name, configuration) { .runtime(try make($0, $1)) }
    }
}
