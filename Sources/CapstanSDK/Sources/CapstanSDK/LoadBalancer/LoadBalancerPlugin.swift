import CapstanCore

/// Spreads a service's connections over its ready backends.
///
/// Two shapes of plugin fit this protocol (SDK 1.4, docs/proposals/0004-networking.md):
/// - an **in-process picker** (`dataPlane == .inProcess`): the host calls ``program(_:)`` when a
///   service's frontend or backends change, asks ``pick(_:)`` for each new connection and
///   reports ``release(_:)`` when it ends;
/// - a **data plane** (`.kernel`, `.external`): the plugin moves packets itself (nftables, an
///   external balancer). It implements ``program(_:)``, ``removeService(_:)`` and
///   ``synchronize(_:)``; the host never asks it to pick, and the per-connection members keep
///   their default implementations.
///
/// Conforming plugins must:
/// - never pick a backend that is not ready or is draining;
/// - keep a removed backend *draining* while it has open connections, then forget it;
/// - return nil from ``pick(_:)`` when no backend can take the connection;
/// - keep ``pick(_:)`` and ``release(_:)`` cheap and non-blocking (they are per connection).
public protocol LoadBalancerPlugin: Sendable {
    var capabilities: LoadBalancerCapabilities { get }
    /// Sets a service's frontend and backends; backends missing from the list start draining.
    func program(_ request: ProgramServiceRequest) async throws
    /// Removes a service; its backends drain.
    func removeService(_ service: String) async throws
    /// Chooses the backend for a new connection.
    func pick(_ request: PickRequest) -> PickedBackend?
    /// A connection from ``pick(_:)`` ended.
    func release(_ picked: PickedBackend)
    /// Per-backend counters of a service.
    func stats(service: String) -> [BackendStats]
    /// Makes the plugin hold exactly `services` (SDK 1.4): sent when the agent starts and on
    /// every periodic resync, so a data plane that lost state (a reboot, someone's `nft flush`)
    /// is rebuilt, and services the host no longer knows are removed. A data plane applies it
    /// as one transaction. The default programs each service and removes none.
    func synchronize(_ services: [ProgramServiceRequest]) async throws
}

extension LoadBalancerPlugin {
    /// Data-plane plugins pick no backend (SDK 1.4 default).
    public func pick(_ request: PickRequest) -> PickedBackend? { nil }
    public func release(_ picked: PickedBackend) {}
    public func stats(service: String) -> [BackendStats] { [] }
    public func synchronize(_ services: [ProgramServiceRequest]) async throws {
        for service in services { try await program(service) }
    }
}

/// Where a load balancer's packets are moved (SDK 1.4).
public enum LoadBalancerDataPlane: String, Sendable, Hashable, Codable {
    /// The host calls ``LoadBalancerPlugin/pick(_:)`` per connection.
    case inProcess
    /// The plugin programs the node's kernel (nftables, IPVS, eBPF); packets never reach the host's code.
    case kernel
    /// The plugin configures a balancer outside the agent (HAProxy, a cloud balancer).
    case external
}

public struct LoadBalancerCapabilities: Sendable, Hashable {
    /// The algorithm's name: `roundrobin`, `leastconn`, `consistenthash`…
    public var algorithm: String
    /// Picks honour a connection key (session affinity).
    public var usesKey: Bool
    /// Who moves the packets (SDK 1.4); `.inProcess` for plugins built before.
    public var dataPlane: LoadBalancerDataPlane = .inProcess
    /// The algorithms a service may ask for with `spec.algorithm` (SDK 1.4); a data plane that
    /// offers several lists them, the first being its default. Empty: just ``algorithm``.
    public var algorithms: [String] = []
    public init(algorithm: String, usesKey: Bool = false) {
        self.algorithm = algorithm
        self.usesKey = usesKey
    }
    public init(dataPlane: LoadBalancerDataPlane, algorithms: [String], usesKey: Bool = false) {
        self.algorithm = algorithms.first ?? ""
        self.usesKey = usesKey
        self.dataPlane = dataPlane
        self.algorithms = algorithms
    }
    /// Every algorithm a service may name.
    public var offeredAlgorithms: [String] { algorithms.isEmpty ? [algorithm] : algorithms }
}

public struct Backend: Sendable, Hashable {
    /// Stable identity, usually the instance name.
    public var id: String
    public var address: String
    public var port: Int
    public var ready: Bool
    public var weight: Int
    public init(id: String, address: String, port: Int, ready: Bool = true, weight: Int = 1) {
        self.id = id
        self.address = address
        self.port = port
        self.ready = ready
        self.weight = weight
    }
}

public struct ProgramServiceRequest: Sendable, Hashable {
    public var service: String
    /// Where clients connect: `0.0.0.0:8080`.
    public var frontendAddress: String
    public var frontendPort: Int
    public var backends: [Backend]
    /// `tcp` or `udp` (SDK 1.4).
    public var `protocol`: String = "tcp"
    /// The service's `spec.algorithm` (SDK 1.4); nil for the plugin's default.
    public var algorithm: String?
    public init(service: String, frontendAddress: String, frontendPort: Int, backends: [Backend]) {
        self.service = service
        self.frontendAddress = frontendAddress
        self.frontendPort = frontendPort
        self.backends = backends
    }
}

public struct PickRequest: Sendable, Hashable {
    public var service: String
    /// A connection key (client address) for algorithms that use one.
    public var key: String?
    public init(service: String, key: String? = nil) {
        self.service = service
        self.key = key
    }
}

public struct PickedBackend: Sendable, Hashable {
    public var service: String
    public var backend: Backend
    public init(service: String, backend: Backend) {
        self.service = service
        self.backend = backend
    }
}

public struct BackendStats: Sendable, Hashable {
    public enum State: String, Sendable, Hashable {
        case active, notReady, draining
    }
    public var backend: Backend
    public var state: State
    public var activeConnections: Int
    public var totalConnections: Int
    public init(backend: Backend, state: State, activeConnections: Int, totalConnections: Int) {
        self.backend = backend
        self.state = state
        self.activeConnections = activeConnections
        self.totalConnections = totalConnections
    }
}
