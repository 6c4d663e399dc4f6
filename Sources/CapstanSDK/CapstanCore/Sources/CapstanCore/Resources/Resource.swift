

/// The spec of one kind of resource; ``Resource`` wraps it in manifest shape.
public protocol ResourceSpec: Codable, Sendable, Hashable {
    /// What the controllers and agents observe; starts empty.
    associatedtype Status: Codable, Sendable, Hashable = EmptyStatus
    /// The manifest `kind`: `Node`, `Workload`, …
    static var kind: String { get }
    /// Every problem in this spec; `path` is where it sits in the document (`spec`).
    func validate(at path: String) -> [ValidationProblem]
    /// A status for a newly created object.
    static var initialStatus: Status { get }
}

extension ResourceSpec {
    public func validate(at path: String) -> [ValidationProblem] { [] }
}

extension ResourceSpec where Status == EmptyStatus {
    public static var initialStatus: EmptyStatus { EmptyStatus() }
}

/// The status of kinds that have none.
public struct EmptyStatus: Codable, Sendable, Hashable {
    public init() {}
}

/// The manifest version every Capstan document carries.
public let capstanAPIVersion = "capstan.dev/v1"

/// One object in manifest shape: `apiVersion`, `kind`, `metadata`, `spec`, `status`.
public struct Resource<Spec: ResourceSpec>: Codable, Sendable, Hashable, Validatable {
    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta
    public var spec: Spec
    public var status: Spec.Status

    public init(name: String, labels: [String: String] = [:], spec: Spec, status: Spec.Status? = nil) {
        self.apiVersion = capstanAPIVersion
        self.kind = Spec.kind
        self.metadata = ObjectMeta(name: name, labels: labels)
        self.spec = spec
        self.status = status ?? Spec.initialStatus
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case apiVersion, kind, metadata, spec, status
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        apiVersion = try container.decodeIfPresent(String.self, forKey: .apiVersion) ?? capstanAPIVersion
        kind = try container.decodeIfPresent(String.self, forKey: .kind) ?? Spec.kind
        metadata = try container.decode(ObjectMeta.self, forKey: .metadata)
        spec = try container.decode(Spec.self, forKey: .spec)
        status = try container.decodeIfPresent(Spec.Status.self, forKey: .status) ?? Spec.initialStatus
    }

    /// Every problem in the document, each with its field path.
    public func validate() -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if apiVersion != capstanAPIVersion {
            problems.append(ValidationProblem(path: "apiVersion", message: "\"\(apiVersion)\" is not supported; use \(capstanAPIVersion)"))
        }
        if kind != Spec.kind {
            problems.append(ValidationProblem(path: "kind", message: "\"\(kind)\" does not match \(Spec.kind)"))
        }
        problems += metadata.validate(at: "metadata")
        problems += spec.validate(at: "spec")
        return problems
    }
}

/// Name, labels and bookkeeping common to every object.
public struct ObjectMeta: Codable, Sendable, Hashable {
    /// Unique within its kind; a DNS label (lowercase letters, digits, '-'; at most 63).
    public var name: String
    public var labels: [String: String]
    public var annotations: [String: String]
    /// Assigned by the store on creation.
    public var uid: String?
    /// The store revision of the last write of this object; the compare-and-swap token.
    public var revision: UInt64?
    /// Set by the store: 1 at creation, raised by one each time `spec` changes (status,
    /// labels and other metadata leave it alone). Controllers report the generation they acted
    /// on (`status.observedGeneration`), so a client knows when its change has been seen (SDK 1.3).
    public var generation: Int64?
    public var creationTimestamp: Timestamp?
    /// Set when a graceful delete has begun.
    public var deletionTimestamp: Timestamp?
    /// The object that owns this one (a Workload for its Instances), as `Kind/name`.
    public var owner: String?

    public init(name: String, labels: [String: String] = [:], annotations: [String: String] = [:]) {
        self.name = name
        self.labels = labels
        self.annotations = annotations
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, labels, annotations, uid, revision, generation, creationTimestamp, deletionTimestamp, owner
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        name = try container.decode(String.self, forKey: .name)
        labels = try container.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
        annotations = try container.decodeIfPresent([String: String].self, forKey: .annotations) ?? [:]
        uid = try container.decodeIfPresent(String.self, forKey: .uid)
        revision = try container.decodeIfPresent(UInt64.self, forKey: .revision)
        generation = try container.decodeIfPresent(Int64.self, forKey: .generation)
        creationTimestamp = try container.decodeIfPresent(Timestamp.self, forKey: .creationTimestamp)
        deletionTimestamp = try container.decodeIfPresent(Timestamp.self, forKey: .deletionTimestamp)
        owner = try container.decodeIfPresent(String.self, forKey: .owner)
    }

    func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if let message = DNSLabel.problem(with: name) {
            problems.append(ValidationProblem(path: "\(path).name", message: message))
        }
        for key in labels.keys.sorted() where !LabelKey.isValid(key) {
            problems.append(ValidationProblem(path: "\(path).labels.\(key)", message: "is not a label key (letters, digits, '-', '_', '.', one optional '/' prefix; at most 63 after it)"))
        }
        return problems
    }
}

/// Object names: DNS labels, as in Kubernetes.
public enum DNSLabel {
    /// Why `name` is not a DNS label, or nil when it is one.
    public static func problem(with name: String) -> String? {
        if name.isEmpty { return "is empty; give the object a name" }
        if name.utf8.count > 63 { return "\"\(name)\" is longer than 63 characters" }
        let ok = name.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-")
        }
        if !ok || name.hasPrefix("-") || name.hasSuffix("-") {
            return "\"\(name)\" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
        }
        return nil
    }
}

enum LabelKey {
    static func isValid(_ key: String) -> Bool {
        let name = key.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).last ?? ""
        guard !name.isEmpty, name.utf8.count <= 63 else { return false }
        return key.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".") || c == UInt8(ascii: "/")
        }
    }
}
