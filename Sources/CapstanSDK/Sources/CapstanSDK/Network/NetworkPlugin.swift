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

/// A network plugin that gives instances addresses from the node's pod subnet and reaches other
/// nodes' subnets (SDK 1.4). The agent calls ``configure(_:)`` once it knows its subnet, and
/// again whenever a node joins, leaves or moves; the call must be idempotent and converge (add
/// what is missing, remove what is no longer wanted). An optional ability (STYLE.md rule 3):
/// plugins without it (host networking) are never called.
public protocol NetworkTopology: NetworkPlugin {
    func configure(_ network: ClusterNetwork) async throws
}

/// What a node's network plugin needs to know of the cluster's addresses (SDK 1.4).
public struct ClusterNetwork: Sendable, Hashable {
    /// This node.
    public var nodeName: String
    /// This node's pod subnet, e.g. `10.244.1.0/24`.
    public var podCIDR: String
    /// Every node's pod subnet lies in it (`10.244.0.0/16`).
    public var clusterCIDR: String
    /// Services' virtual IPs lie in it (`10.96.0.0/16`).
    public var serviceCIDR: String
    /// This node's address, as other nodes reach it.
    public var nodeAddress: String?
    /// Every other node with a pod subnet.
    public var peers: [NetworkPeer]
    public init(nodeName: String, podCIDR: String, clusterCIDR: String, serviceCIDR: String, nodeAddress: String? = nil, peers: [NetworkPeer] = []) {
        self.nodeName = nodeName
        self.podCIDR = podCIDR
        self.clusterCIDR = clusterCIDR
        self.serviceCIDR = serviceCIDR
        self.nodeAddress = nodeAddress
        self.peers = peers
    }
}

/// Another node: where its instances' subnet is reached.
public struct NetworkPeer: Sendable, Hashable {
    public var nodeName: String
    /// Its address, as this node reaches it.
    public var address: String
    public var podCIDR: String
    public init(nodeName: String, address: String, podCIDR: String) {
        self.nodeName = nodeName
        self.address = address
        self.podCIDR = podCIDR
    }
}

/// A network plugin whose attachments outlive the agent and can be listed (SDK 1.4), so a
/// restarted agent removes those whose instance is gone (garbage collection). Optional.
public protocol NetworkInventory: NetworkPlugin {
    /// The instance IDs this plugin holds an attachment for on this node.
    func attachedInstances() async throws -> [String]
}
