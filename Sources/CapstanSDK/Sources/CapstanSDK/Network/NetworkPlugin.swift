import CapstanCore

/// Connects instances to a network and gives them addresses (in the spirit of CNI).
///
/// Conforming plugins must:
/// - make ``attach(_:)`` idempotent per instance: attaching again returns the same attachment;
/// - make ``detach(_:)`` succeed when the instance is not attached, and free what it held;
/// - throw ``PluginError/Code/resourceExhausted`` or ``PluginError/Code/alreadyExists`` when a
///   requested host port is taken, naming the port.
public protocol NetworkPlugin: Sendable {
    var capabilities: NetworkCapabilities { get }
    /// Attaches an instance; returns its addresses and port mappings.
    func attach(_ request: NetworkAttachRequest) async throws -> NetworkAttachment
    /// Detaches an instance and releases its addresses and ports.
    func detach(_ request: NetworkDetachRequest) async throws
    /// Verifies an attachment is still in place; throws ``PluginError/Code/notFound`` when not.
    func check(_ request: NetworkCheckRequest) async throws -> NetworkAttachment
    /// The plugin's health and what it holds.
    func status() async throws -> NetworkStatus
}

public struct NetworkCapabilities: Sendable, Hashable {
    /// Instances get their own network namespace and address.
    public var isolatedNamespaces: Bool
    /// Host ports can be mapped to instance ports.
    public var portMapping: Bool
    public init(isolatedNamespaces: Bool, portMapping: Bool) {
        self.isolatedNamespaces = isolatedNamespaces
        self.portMapping = portMapping
    }
}

public struct NetworkAttachRequest: Sendable, Hashable {
    public var instanceID: String
    /// The instance's network namespace (`/var/run/netns/…`), for plugins that use one.
    public var namespacePath: String?
    public var ports: [PortSpec]
    public init(instanceID: String, namespacePath: String? = nil, ports: [PortSpec] = []) {
        self.instanceID = instanceID
        self.namespacePath = namespacePath
        self.ports = ports
    }
}

public struct PortMapping: Sendable, Hashable, Codable {
    public var containerPort: Int
    public var hostPort: Int
    /// `tcp` or `udp`.
    public var `protocol`: String
    public init(containerPort: Int, hostPort: Int, protocol: String) {
        self.containerPort = containerPort
        self.hostPort = hostPort
        self.protocol = `protocol`
    }
}

public struct NetworkAttachment: Sendable, Hashable {
    public var instanceID: String
    /// The addresses the instance is reachable at.
    public var addresses: [String]
    public var ports: [PortMapping]
    /// Environment the runtime should add (e.g. `PORT` for host networking).
    public var environment: [String: String]
    public init(instanceID: String, addresses: [String], ports: [PortMapping], environment: [String: String] = [:]) {
        self.instanceID = instanceID
        self.addresses = addresses
        self.ports = ports
        self.environment = environment
    }
}

public struct NetworkDetachRequest: Sendable, Hashable {
    public var instanceID: String
    public var namespacePath: String?
    public init(instanceID: String, namespacePath: String? = nil) {
        self.instanceID = instanceID
        self.namespacePath = namespacePath
    }
}

public struct NetworkCheckRequest: Sendable, Hashable {
    public var instanceID: String
    public init(instanceID: String) { self.instanceID = instanceID }
}

public struct NetworkStatus: Sendable, Hashable {
    public var healthy: Bool
    public var attachments: Int
    public var message: String
    public init(healthy: Bool, attachments: Int, message: String) {
        self.healthy = healthy
        self.attachments = attachments
        self.message = message
    }
}
