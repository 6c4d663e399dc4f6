/// A provisioned piece of storage (like a Kubernetes PersistentVolume).
public typealias Volume = Resource<VolumeSpec>

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

    public init(provisioner: String, volumeHandle: String, capacity: Quantity, nodeName: String? = nil, claim: String? = nil) {
        self.provisioner = provisioner
        self.volumeHandle = volumeHandle
        self.capacity = capacity
        self.nodeName = nodeName
        self.claim = claim
    }
}

/// A request for storage that outlives instances (like a PersistentVolumeClaim).
public typealias VolumeClaim = Resource<VolumeClaimSpec>

public struct VolumeClaimSpec: ResourceSpec {
    public static let kind = "VolumeClaim"
    /// The storage plugin to provision from; the configured default when nil.
    public var provisioner: String?
    public var size: Quantity
    /// Set when bound.
    public var volumeName: String?

    public init(provisioner: String? = nil, size: Quantity, volumeName: String? = nil) {
        self.provisioner = provisioner
        self.size = size
        self.volumeName = volumeName
    }

    public func validate(at path: String) -> [ValidationProblem] {
        if size.milliValue <= 0 { return [ValidationProblem(path: "\(path).size", message: "must be more than zero (e.g. 1Gi)")] }
        if size.value > FieldLimits.maxMemoryBytes { return [ValidationProblem(path: "\(path).size", message: "\(size) is more than 1Pi, the largest volume Capstan accepts")] }
        return []
    }
}
