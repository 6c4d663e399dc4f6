import CapstanCore

/// Spreads a service's connections over its ready backends.
///
/// The control plane calls ``program(_:)`` whenever a service's frontend or backends change; the
/// data plane asks ``pick(_:)`` for each new connection and reports ``release(_:)`` when it ends.
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
}

public struct LoadBalancerCapabilities: Sendable, Hashable {
    /// The algorithm's name: `roundrobin`, `leastconn`, `consistenthash`…
    public var algorithm: String
    /// Picks honour a connection key (session affinity).
    public var usesKey: Bool
    public init(algorithm: String, usesKey: Bool = false) {
        self.algorithm = algorithm
        self.usesKey = usesKey
    }
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
