/// A provisioned piece of storage (like a Kubernetes PersistentVolume).
public typealias Volume = Resource<VolumeSpec>

/// How a volume may be used at once (SDK 1.5), as in Kubernetes.
public enum VolumeAccessMode: String, Codable, Sendable, Hashable, CaseIterable, Comparable {
    /// Read-write by the instances of one node.
    case readWriteOnce = "ReadWriteOnce"
    /// Read-only by instances on any number of nodes.
    case readOnlyMany = "ReadOnlyMany"
    /// Read-write by instances on any number of nodes.
    case readWriteMany = "ReadWriteMany"
    /// Read-write by one instance at a time.
    case readWriteOncePod = "ReadWriteOncePod"

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// What happens to a volume and its data when its claim is deleted (SDK 1.5).
public enum ReclaimPolicy: String, Codable, Sendable, Hashable, CaseIterable {
    /// The volume and its data stay (phase `Released`); a new claim can name it in
    /// `spec.volumeName` to use the data again.
    case retain = "Retain"
    /// The storage plugin deletes the data, then the Volume object goes.
    case delete = "Delete"
}

/// When a claim gets its volume (SDK 1.5).
public enum VolumeBindingMode: String, Codable, Sendable, Hashable, CaseIterable {
    /// As soon as the claim exists, on a ready node that runs the class's provisioner.
    case immediate = "Immediate"
    /// When the first instance that mounts it is placed: on that instance's node.
    case waitForFirstConsumer = "WaitForFirstConsumer"
}

public struct VolumeSpec: ResourceSpec {
    public static let kind = "Volume"
    /// The storage plugin that provisioned it.
    public var provisioner: String
    /// The provisioner's own identifier.
    public var volumeHandle: String
    public var capacity: Quantity
    /// For node-local storage: the only node whose instances can use it.
    public var nodeName: String?
    /// The claim bound to it.
    public var claim: String?
    /// The class it was provisioned from (SDK 1.5).
    public var storageClassName: String?
    /// What happens when its claim goes (SDK 1.5); `Retain` when left out, so volumes made
    /// before 1.5 never lose data.
    public var reclaimPolicy: ReclaimPolicy?
    /// The modes it serves (SDK 1.5); `[ReadWriteOnce]` when left out.
    public var accessModes: [VolumeAccessMode]?
    /// The node whose agent provisioned it and runs its delete, expand and snapshot calls
    /// (SDK 1.5); `nodeName` when left out.
    public var provisionedOn: String?

    public init(provisioner: String, volumeHandle: String, capacity: Quantity, nodeName: String? = nil, claim: String? = nil) {
        self.provisioner = provisioner
        self.volumeHandle = volumeHandle
        self.capacity = capacity
        self.nodeName = nodeName
        self.claim = claim
    }

    /// The node that handles the volume's controller calls.
    public var controllerNode: String? { provisionedOn ?? nodeName }
    public var effectiveReclaimPolicy: ReclaimPolicy { reclaimPolicy ?? .retain }
    public var effectiveAccessModes: [VolumeAccessMode] { accessModes ?? [.readWriteOnce] }

    public typealias Status = VolumeStatus
    public static var initialStatus: VolumeStatus { VolumeStatus() }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case provisioner, volumeHandle, capacity, nodeName, claim, storageClassName, reclaimPolicy, accessModes, provisionedOn
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        provisioner = try container.decode(String.self, forKey: .provisioner)
        volumeHandle = try container.decode(String.self, forKey: .volumeHandle)
        capacity = try container.decode(Quantity.self, forKey: .capacity)
        nodeName = try container.decodeIfPresent(String.self, forKey: .nodeName)
        claim = try container.decodeIfPresent(String.self, forKey: .claim)
        storageClassName = try container.decodeIfPresent(String.self, forKey: .storageClassName)
        reclaimPolicy = try container.decodeIfPresent(ReclaimPolicy.self, forKey: .reclaimPolicy)
        accessModes = try container.decodeIfPresent([VolumeAccessMode].self, forKey: .accessModes)
        provisionedOn = try container.decodeIfPresent(String.self, forKey: .provisionedOn)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(provisioner, forKey: .provisioner)
        try container.encode(volumeHandle, forKey: .volumeHandle)
        try container.encode(capacity, forKey: .capacity)
        try container.encodeIfPresent(nodeName, forKey: .nodeName)
        try container.encodeIfPresent(claim, forKey: .claim)
        try container.encodeIfPresent(storageClassName, forKey: .storageClassName)
        try container.encodeIfPresent(reclaimPolicy, forKey: .reclaimPolicy)
        try container.encodeIfPresent(accessModes, forKey: .accessModes)
        try container.encodeIfPresent(provisionedOn, forKey: .provisionedOn)
    }

    public func validate(at path: String) -> [ValidationProblem] {
        var problems = VolumeSize.problems(capacity, at: "\(path).capacity")
        if provisioner.isEmpty { problems.append(ValidationProblem(path: "\(path).provisioner", message: "is empty; name the storage plugin")) }
        if volumeHandle.isEmpty || volumeHandle.utf8.count > 1024 {
            problems.append(ValidationProblem(path: "\(path).volumeHandle", message: "must be 1 to 1024 bytes"))
        }
        if let accessModes { problems += VolumeSize.accessModeProblems(accessModes, at: "\(path).accessModes") }
        return problems
    }
}

/// A volume's lifecycle (SDK 1.5).
public struct VolumeStatus: Codable, Sendable, Hashable {
    public enum Phase: String, Codable, Sendable, Hashable {
        /// Provisioned, no claim.
        case available = "Available"
        /// Serving its claim.
        case bound = "Bound"
        /// Its claim is gone; the data stays until the reclaim policy acts.
        case released = "Released"
        /// The reclaim failed; the condition says why.
        case failed = "Failed"
    }

    public var phase: Phase?
    /// What the plugin reports the volume holds; below `spec.capacity` while it grows.
    public var capacity: Quantity?
    /// `Reclaimed` false with the plugin's error when deleting the data failed; `Resized`
    /// false while an expansion is pending or failed.
    public var conditions: [Condition]

    public init(phase: Phase? = nil, capacity: Quantity? = nil, conditions: [Condition] = []) {
        self.phase = phase
        self.capacity = capacity
        self.conditions = conditions
    }

    enum CodingKeys: String, CodingKey { case phase, capacity, conditions }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        phase = try container.decodeIfPresent(Phase.self, forKey: .phase)
        capacity = try container.decodeIfPresent(Quantity.self, forKey: .capacity)
        conditions = try container.decodeIfPresent([Condition].self, forKey: .conditions) ?? []
    }
}

/// A request for storage that outlives instances (like a PersistentVolumeClaim).
public typealias VolumeClaim = Resource<VolumeClaimSpec>

public struct VolumeClaimSpec: ResourceSpec {
    public static let kind = "VolumeClaim"
    /// The storage plugin to provision from when no class is named; the configured default
    /// when nil. Kept for manifests written before SDK 1.5: prefer `storageClassName`.
    public var provisioner: String?
    /// The StorageClass to provision from (SDK 1.5): its provisioner, parameters, reclaim
    /// policy, expansion and binding mode. Left out: the class marked default, else the
    /// default storage plugin with `Delete` and `WaitForFirstConsumer`.
    public var storageClassName: String?
    /// How much; raising it grows the volume (when the class allows expansion), lowering it is
    /// refused.
    public var size: Quantity
    /// How the volume may be used at once (SDK 1.5); `[ReadWriteOnce]` when left out.
    public var accessModes: [VolumeAccessMode]?
    /// Set when bound. A new claim may name a `Released` volume here to take over its data.
    public var volumeName: String?
    /// Fill the new volume from this (SDK 1.5): `{kind: VolumeSnapshot, name: …}`. The claim is
    /// provisioned where the snapshot lives, at least the snapshot's size.
    public var dataSource: VolumeClaimDataSource?

    public init(provisioner: String? = nil, size: Quantity, volumeName: String? = nil) {
        self.provisioner = provisioner
        self.size = size
        self.volumeName = volumeName
    }

    public var effectiveAccessModes: [VolumeAccessMode] { accessModes ?? [.readWriteOnce] }

    public typealias Status = VolumeClaimStatus
    public static var initialStatus: VolumeClaimStatus { VolumeClaimStatus(phase: .pending) }

    enum CodingKeys: String, CodingKey, CaseIterable { case provisioner, storageClassName, size, accessModes, volumeName, dataSource }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        provisioner = try container.decodeIfPresent(String.self, forKey: .provisioner)
        storageClassName = try container.decodeIfPresent(String.self, forKey: .storageClassName)
        size = try container.decode(Quantity.self, forKey: .size)
        accessModes = try container.decodeIfPresent([VolumeAccessMode].self, forKey: .accessModes)
        volumeName = try container.decodeIfPresent(String.self, forKey: .volumeName)
        dataSource = try container.decodeIfPresent(VolumeClaimDataSource.self, forKey: .dataSource)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(provisioner, forKey: .provisioner)
        try container.encodeIfPresent(dataSource, forKey: .dataSource)
        try container.encodeIfPresent(storageClassName, forKey: .storageClassName)
        try container.encode(size, forKey: .size)
        try container.encodeIfPresent(accessModes, forKey: .accessModes)
        try container.encodeIfPresent(volumeName, forKey: .volumeName)
    }

    public func validate(at path: String) -> [ValidationProblem] {
        var problems = VolumeSize.problems(size, at: "\(path).size")
        if let storageClassName, let problem = DNSLabel.problem(with: storageClassName) {
            problems.append(ValidationProblem(path: "\(path).storageClassName", message: problem))
        }
        if let volumeName, let problem = DNSLabel.problem(with: volumeName) {
            problems.append(ValidationProblem(path: "\(path).volumeName", message: problem))
        }
        if let accessModes { problems += VolumeSize.accessModeProblems(accessModes, at: "\(path).accessModes") }
        if let dataSource {
            if dataSource.kind != VolumeSnapshotSpec.kind {
                problems.append(ValidationProblem(path: "\(path).dataSource.kind", message: "\"\(dataSource.kind)\" cannot fill a volume; use VolumeSnapshot"))
            }
            if let problem = DNSLabel.problem(with: dataSource.name) { problems.append(ValidationProblem(path: "\(path).dataSource.name", message: problem)) }
        }
        return problems
    }
}

/// Where a new volume's data comes from (SDK 1.5).
public struct VolumeClaimDataSource: Codable, Sendable, Hashable {
    /// `VolumeSnapshot`, the only kind for now.
    public var kind: String
    public var name: String

    public init(kind: String = VolumeSnapshotSpec.kind, name: String) {
        self.kind = kind
        self.name = name
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case kind, name }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        kind = try container.decodeIfPresent(String.self, forKey: .kind) ?? VolumeSnapshotSpec.kind
        name = try container.decode(String.self, forKey: .name)
    }
}

/// A point-in-time copy of a claim's volume (like a Kubernetes VolumeSnapshot, SDK 1.5), taken
/// by the storage plugin on the node whose agent handles the volume. A claim restores it with
/// `spec.dataSource`.
public typealias VolumeSnapshot = Resource<VolumeSnapshotSpec>

public struct VolumeSnapshotSpec: ResourceSpec {
    public static let kind = "VolumeSnapshot"
    /// The VolumeClaim whose volume is copied; it must be bound.
    public var source: String

    public init(source: String) { self.source = source }

    public typealias Status = VolumeSnapshotStatus
    public static var initialStatus: VolumeSnapshotStatus { VolumeSnapshotStatus() }

    enum CodingKeys: String, CodingKey, CaseIterable { case source }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        source = try container.decode(String.self, forKey: .source)
    }

    public func validate(at path: String) -> [ValidationProblem] {
        DNSLabel.problem(with: source).map { [ValidationProblem(path: "\(path).source", message: "\($0); name the VolumeClaim to copy")] } ?? []
    }
}

/// A snapshot's state (SDK 1.5).
public struct VolumeSnapshotStatus: Codable, Sendable, Hashable {
    /// True once the plugin took it: claims may restore it.
    public var readyToUse: Bool
    /// The volume copied, its plugin, and the node whose agent takes (and deletes) the snapshot —
    /// for node-local storage, the node restores happen on. Set by the volume controller.
    public var volumeName: String?
    public var provisioner: String?
    public var nodeName: String?
    /// The plugin's identifier for it.
    public var snapshotHandle: String?
    /// The smallest claim that can restore it.
    public var restoreSize: Quantity?
    public var creationTime: Timestamp?
    /// `Ready` false with a reason (`SourceNotBound`, `SnapshotFailed`, `Unsupported`).
    public var conditions: [Condition]

    public init(readyToUse: Bool = false, conditions: [Condition] = []) {
        self.readyToUse = readyToUse
        self.conditions = conditions
    }

    enum CodingKeys: String, CodingKey { case readyToUse, volumeName, provisioner, nodeName, snapshotHandle, restoreSize, creationTime, conditions }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        readyToUse = try container.decodeIfPresent(Bool.self, forKey: .readyToUse) ?? false
        volumeName = try container.decodeIfPresent(String.self, forKey: .volumeName)
        provisioner = try container.decodeIfPresent(String.self, forKey: .provisioner)
        nodeName = try container.decodeIfPresent(String.self, forKey: .nodeName)
        snapshotHandle = try container.decodeIfPresent(String.self, forKey: .snapshotHandle)
        restoreSize = try container.decodeIfPresent(Quantity.self, forKey: .restoreSize)
        creationTime = try container.decodeIfPresent(Timestamp.self, forKey: .creationTime)
        conditions = try container.decodeIfPresent([Condition].self, forKey: .conditions) ?? []
    }
}

/// A claim's lifecycle (SDK 1.5).
public struct VolumeClaimStatus: Codable, Sendable, Hashable {
    public enum Phase: String, Codable, Sendable, Hashable {
        /// No volume yet: waiting for its first instance, for provisioning, or for a problem
        /// a condition names.
        case pending = "Pending"
        /// Bound to `spec.volumeName`.
        case bound = "Bound"
        /// Its volume is gone; the data with it.
        case lost = "Lost"
    }

    public var phase: Phase?
    /// What the bound volume holds; below `spec.size` while an expansion is under way.
    public var capacity: Quantity?
    public var accessModes: [VolumeAccessMode]?
    /// `Bound`, `Resizing`: false with a reason (`ClassNotFound`, `ProvisioningFailed`,
    /// `ExpansionFailed`, …) and what to do.
    public var conditions: [Condition]

    public init(phase: Phase? = nil, capacity: Quantity? = nil, accessModes: [VolumeAccessMode]? = nil, conditions: [Condition] = []) {
        self.phase = phase
        self.capacity = capacity
        self.accessModes = accessModes
        self.conditions = conditions
    }

    enum CodingKeys: String, CodingKey { case phase, capacity, accessModes, conditions }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        phase = try container.decodeIfPresent(Phase.self, forKey: .phase)
        capacity = try container.decodeIfPresent(Quantity.self, forKey: .capacity)
        accessModes = try container.decodeIfPresent([VolumeAccessMode].self, forKey: .accessModes)
        conditions = try container.decodeIfPresent([Condition].self, forKey: .conditions) ?? []
    }
}

/// A kind of storage an operator offers (like a Kubernetes StorageClass, SDK 1.5): which
/// plugin provisions it, with which parameters, and what happens to the data.
public typealias StorageClass = Resource<StorageClassSpec>

public struct StorageClassSpec: ResourceSpec {
    public static let kind = "StorageClass"
    /// The storage plugin (`hostpath`, `loopback`, a vendor's).
    public var provisioner: String
    /// Passed to the plugin's `createVolume`; the plugin refuses what it does not know.
    public var parameters: [String: String]
    /// `Delete` (the default) or `Retain`.
    public var reclaimPolicy: ReclaimPolicy?
    /// Whether a claim's size may be raised (default false).
    public var allowVolumeExpansion: Bool?
    /// `WaitForFirstConsumer` (the default) or `Immediate`.
    public var volumeBindingMode: VolumeBindingMode?
    /// The largest claim this class accepts (default: 1Pi).
    public var maxSize: Quantity?
    /// Claims that name no class use this one (at most one class should say so).
    public var isDefault: Bool?

    public init(provisioner: String, parameters: [String: String] = [:], reclaimPolicy: ReclaimPolicy? = nil, allowVolumeExpansion: Bool? = nil,
                volumeBindingMode: VolumeBindingMode? = nil, maxSize: Quantity? = nil, isDefault: Bool? = nil) {
        self.provisioner = provisioner
        self.parameters = parameters
        self.reclaimPolicy = reclaimPolicy
        self.allowVolumeExpansion = allowVolumeExpansion
        self.volumeBindingMode = volumeBindingMode
        self.maxSize = maxSize
        self.isDefault = isDefault
    }

    public var effectiveReclaimPolicy: ReclaimPolicy { reclaimPolicy ?? .delete }
    public var effectiveBindingMode: VolumeBindingMode { volumeBindingMode ?? .waitForFirstConsumer }
    public var expansionAllowed: Bool { allowVolumeExpansion ?? false }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case provisioner, parameters, reclaimPolicy, allowVolumeExpansion, volumeBindingMode, maxSize, isDefault
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        provisioner = try container.decode(String.self, forKey: .provisioner)
        parameters = try container.decodeIfPresent([String: String].self, forKey: .parameters) ?? [:]
        reclaimPolicy = try container.decodeIfPresent(ReclaimPolicy.self, forKey: .reclaimPolicy)
        allowVolumeExpansion = try container.decodeIfPresent(Bool.self, forKey: .allowVolumeExpansion)
        volumeBindingMode = try container.decodeIfPresent(VolumeBindingMode.self, forKey: .volumeBindingMode)
        maxSize = try container.decodeIfPresent(Quantity.self, forKey: .maxSize)
        isDefault = try container.decodeIfPresent(Bool.self, forKey: .isDefault)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(provisioner, forKey: .provisioner)
        if !parameters.isEmpty { try container.encode(parameters, forKey: .parameters) }
        try container.encodeIfPresent(reclaimPolicy, forKey: .reclaimPolicy)
        try container.encodeIfPresent(allowVolumeExpansion, forKey: .allowVolumeExpansion)
        try container.encodeIfPresent(volumeBindingMode, forKey: .volumeBindingMode)
        try container.encodeIfPresent(maxSize, forKey: .maxSize)
        try container.encodeIfPresent(isDefault, forKey: .isDefault)
    }

    public func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if let problem = DNSLabel.problem(with: provisioner) {
            problems.append(ValidationProblem(path: "\(path).provisioner", message: "\(problem); name a storage plugin (hostpath, loopback, …)"))
        }
        if parameters.count > 64 { problems.append(ValidationProblem(path: "\(path).parameters", message: "has \(parameters.count) entries; at most 64")) }
        for (key, value) in parameters.sorted(by: { $0.key < $1.key }) where key.isEmpty || key.utf8.count > 253 || value.utf8.count > 4096 {
            problems.append(ValidationProblem(path: "\(path).parameters.\(key)", message: "keys are 1 to 253 bytes, values at most 4096"))
        }
        if let maxSize { problems += VolumeSize.problems(maxSize, at: "\(path).maxSize") }
        return problems
    }
}

/// The rules every volume size and access-mode list follows.
public enum VolumeSize {
    /// The largest volume Capstan accepts: 1Pi.
    public static let maxBytes: Int64 = FieldLimits.maxMemoryBytes

    /// A size a plugin reported, as a quantity: clamped to 0…1Pi (a plugin's number never traps
    /// the host), printed in binary units.
    public static func quantity(bytes: Int64) -> Quantity {
        Quantity(value: min(max(bytes, 0), maxBytes), format: .binarySI)
    }

    public static func problems(_ size: Quantity, at path: String) -> [ValidationProblem] {
        if size.milliValue <= 0 { return [ValidationProblem(path: path, message: "must be more than zero (e.g. 1Gi)")] }
        if size.value > maxBytes { return [ValidationProblem(path: path, message: "\(size) is more than 1Pi, the largest volume Capstan accepts")] }
        return []
    }

    public static func accessModeProblems(_ modes: [VolumeAccessMode], at path: String) -> [ValidationProblem] {
        if modes.isEmpty { return [ValidationProblem(path: path, message: "is empty; leave it out for [ReadWriteOnce] or name at least one mode")] }
        if Set(modes).count != modes.count { return [ValidationProblem(path: path, message: "names a mode twice")] }
        return []
    }
}
