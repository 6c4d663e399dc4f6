import CapstanCore

/// What `GET /v1/<kind>` answers: the objects and the revision they are consistent at, from
/// which a watch resumes without missing a write.
public struct ObjectList: Codable, Sendable {
    public var kind: String
    public var revision: UInt64
    public var items: [AnyResource]

    public init(kind: String, revision: UInt64, items: [AnyResource]) {
        self.kind = kind
        self.revision = revision
        self.items = items
    }
}

/// One line of a watch stream (`GET /v1/watch/<kind>?revision=N`), newline-delimited JSON.
public struct WatchEvent: Codable, Sendable {
    public enum EventType: String, Codable, Sendable {
        case added = "Added"
        case modified = "Modified"
        case deleted = "Deleted"
        /// The watcher fell behind and events were dropped: relist, then watch from the list's
        /// revision. The stream ends after it.
        case resync = "Resync"
    }

    public var type: EventType
    public var revision: UInt64
    public var object: AnyResource?

    public init(type: EventType, revision: UInt64, object: AnyResource? = nil) {
        self.type = type
        self.revision = revision
        self.object = object
    }

    public init(_ event: ResourceEvent, revision: UInt64) {
        switch event.change {
        case .added: type = .added
        case .modified: type = .modified
        case .deleted: type = .deleted
        @unknown default: type = .modified
        }
        self.revision = revision
        self.object = event.object
    }
}

/// The body of every error answer.
public struct ErrorBody: Codable, Sendable, Hashable {
    /// The HTTP status code.
    public var code: Int
    /// A CamelCase cause: `Invalid`, `Conflict`, `NotFound`, `AlreadyExists`, `BadRequest`,
    /// `Gone` (watch revision too old), `PayloadTooLarge`, `Internal`, `Unavailable`.
    public var reason: String
    public var message: String
    /// For `Invalid`: every problem, with its field path.
    public var problems: [ValidationProblem]

    public init(code: Int, reason: String, message: String, problems: [ValidationProblem] = []) {
        self.code = code
        self.reason = reason
        self.message = message
        self.problems = problems
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        code = try container.decode(Int.self, forKey: .code)
        reason = try container.decode(String.self, forKey: .reason)
        message = try container.decode(String.self, forKey: .message)
        problems = try container.decodeIfPresent([ValidationProblem].self, forKey: .problems) ?? []
    }
}

/// The cluster's address plan, as `GET /v1/cluster` answers it: what every agent's network and
/// DNS need before they program anything.
public struct ClusterInfo: Codable, Sendable, Hashable {
    /// Every node's pod subnet lies in it.
    public var clusterCIDR: String
    /// Services' virtual IPs lie in it.
    public var serviceCIDR: String
    /// Service names resolve as `<name>.<clusterDomain>` (and as `<name>`).
    public var clusterDomain: String
    /// A node whose lease is not renewed for this long is NotReady; after `evictionTimeoutSeconds`
    /// more its instances are replaced elsewhere. Agents fence themselves before that (issue 13).
    public var nodeTimeoutSeconds: Double?
    public var evictionTimeoutSeconds: Double?
    public init(clusterCIDR: String, serviceCIDR: String, clusterDomain: String, nodeTimeoutSeconds: Double? = nil, evictionTimeoutSeconds: Double? = nil) {
        self.clusterCIDR = clusterCIDR
        self.serviceCIDR = serviceCIDR
        self.clusterDomain = clusterDomain
        self.nodeTimeoutSeconds = nodeTimeoutSeconds
        self.evictionTimeoutSeconds = evictionTimeoutSeconds
    }
}

/// One plugin as `/v1/plugins` lists it.
public struct PluginInfo: Codable, Sendable, Hashable {
    public var name: String
    public var kind: String
    public var library: String
    public var isDefault: Bool
    /// Where it is loaded: `server` or `node/<name>`.
    public var loadedBy: String

    public init(name: String, kind: String, library: String, isDefault: Bool, loadedBy: String) {
        self.name = name
        self.kind = kind
        self.library = library
        self.isDefault = isDefault
        self.loadedBy = loadedBy
    }
}

/// One API server as `GET /v1/servers` lists it (`capstan get servers`).
public struct ServerInfo: Codable, Sendable, Hashable {
    public var name: String
    /// Where it serves the API.
    public var address: String
    /// Whether it leads (runs the scheduler and the controllers).
    public var leader: Bool
    /// The leader's term (the etcd revision that wrote the leader key); nil for followers and
    /// a server on SQLite.
    public var term: Int64?
    /// When it started (seconds since 1970).
    public var since: Double

    public init(name: String, address: String, leader: Bool, term: Int64?, since: Double) {
        self.name = name
        self.address = address
        self.leader = leader
        self.term = term
        self.since = since
    }
}

/// A piece of an instance's output (`GET /v1/instances/<name>/log`); the bytes are the body and
/// the next offset is in the `capstan-next-offset` header.
public enum LogHeaders {
    public static let nextOffset = "capstan-next-offset"
}

/// The query of a log read (`offset`, `maxBytes`), checked the same way by the server and the
/// agent: a malformed or out-of-range number is a 400 naming the parameter.
public enum LogQuery {
    /// The most one read returns.
    public static let maxBytesLimit = 16 << 20

    public struct Problem: Error, Sendable {
        public var message: String
    }

    /// `offset` (0 to 2^63-1; default 0) and `maxBytes` (1 to 16 MiB; default 1 MiB).
    public static func parse(_ value: (String) -> String?) throws(Problem) -> (offset: UInt64, maxBytes: Int) {
        var offset: UInt64 = 0
        if let text = value("offset") {
            guard let parsed = UInt64(text), parsed <= UInt64(Int64.max) else {
                throw Problem(message: "offset: \"\(text.prefix(40))\" is not a byte offset (0 to \(Int64.max))")
            }
            offset = parsed
        }
        var maxBytes = 1 << 20
        if let text = value("maxBytes") {
            guard let parsed = Int(text), (1...maxBytesLimit).contains(parsed) else {
                throw Problem(message: "maxBytes: \"\(text.prefix(40))\" is not a size (1 to \(maxBytesLimit))")
            }
            maxBytes = parsed
        }
        return (offset, maxBytes)
    }

    /// The longest a log read may be held open waiting for output (`wait`, for `logs -f`).
    public static let maxWaitSeconds: Double = 30

    /// `wait`: seconds to hold the read open when there is no output yet (0 to 30; default 0).
    public static func wait(_ value: (String) -> String?) throws(Problem) -> Double {
        guard let text = value("wait") else { return 0 }
        guard let seconds = Double(text), seconds.isFinite, (0...maxWaitSeconds).contains(seconds) else {
            throw Problem(message: "wait: \"\(text.prefix(40))\" is not a number of seconds (0 to \(Int(maxWaitSeconds)))")
        }
        return seconds
    }
}

/// A token as listed by `GET /v1/tokens`: never its secret.
public struct TokenInfo: Codable, Sendable, Hashable {
    public var id: String
    public var role: String
    public var node: String?
    public var description: String
    public var created: Timestamp
}

/// `POST /v1/tokens`'s answer: the whole token, shown this once.
public struct TokenCreated: Codable, Sendable, Hashable {
    public var id: String
    public var role: String
    public var node: String?
    public var token: String

    public init(id: String, role: String, node: String?, token: String) {
        self.id = id
        self.role = role
        self.node = node
        self.token = token
    }
}

/// `POST /v1/join` (with a join token): a node asks for its identity.
public struct JoinRequest: Codable, Sendable, Hashable {
    /// The node's name (a DNS label).
    public var node: String
    /// The node's own P-256 public key (PEM); its private key never leaves the node.
    public var publicKey: String?
    /// The names and addresses the node's agent serves under, for its certificate.
    public var hosts: [String]

    public init(node: String, publicKey: String?, hosts: [String]) {
        self.node = node
        self.publicKey = publicKey
        self.hosts = hosts
    }
}

/// `POST /v1/join`'s answer: the node's token, and with TLS its certificate and the CA.
public struct JoinResponse: Codable, Sendable, Hashable {
    public var token: String
    public var certificate: String?
    public var ca: String?

    public init(token: String, certificate: String?, ca: String?) {
        self.token = token
        self.certificate = certificate
        self.ca = ca
    }
}
