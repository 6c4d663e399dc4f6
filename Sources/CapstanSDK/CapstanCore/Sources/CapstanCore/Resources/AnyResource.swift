/// An object of any kind, for multi-document manifests, the store and resource events.
public enum AnyResource: Sendable, Hashable, Codable {
    case node(Node)
    case workload(Workload)
    case instance(Instance)
    case volume(Volume)
    case volumeClaim(VolumeClaim)
    case service(Service)
    case endpoints(Endpoints)
    case event(Event)
    case secret(Secret)
    /// SDK 1.3.
    case lease(Lease)
    /// SDK 1.5.
    case storageClass(StorageClass)
    /// SDK 1.5.
    case volumeSnapshot(VolumeSnapshot)

    /// Every kind, by manifest `kind`.
    public static let kinds = ["Node", "Workload", "Instance", "Volume", "VolumeClaim", "Service", "Endpoints", "Event", "Secret", "Lease", "StorageClass", "VolumeSnapshot"]

    public var kind: String {
        switch self {
        case .node: NodeSpec.kind
        case .workload: WorkloadSpec.kind
        case .instance: InstanceSpec.kind
        case .volume: VolumeSpec.kind
        case .volumeClaim: VolumeClaimSpec.kind
        case .service: ServiceSpec.kind
        case .endpoints: EndpointsSpec.kind
        case .event: EventSpec.kind
        case .secret: SecretSpec.kind
        case .lease: LeaseSpec.kind
        case .storageClass: StorageClassSpec.kind
        case .volumeSnapshot: VolumeSnapshotSpec.kind
        }
    }

    public var metadata: ObjectMeta {
        get {
            switch self {
            case .node(let r): r.metadata
            case .workload(let r): r.metadata
            case .instance(let r): r.metadata
            case .volume(let r): r.metadata
            case .volumeClaim(let r): r.metadata
            case .service(let r): r.metadata
            case .endpoints(let r): r.metadata
            case .event(let r): r.metadata
            case .secret(let r): r.metadata
            case .lease(let r): r.metadata
            case .storageClass(let r): r.metadata
            case .volumeSnapshot(let r): r.metadata
            }
        }
        set {
            switch self {
            case .node(var r): r.metadata = newValue; self = .node(r)
            case .workload(var r): r.metadata = newValue; self = .workload(r)
            case .instance(var r): r.metadata = newValue; self = .instance(r)
            case .volume(var r): r.metadata = newValue; self = .volume(r)
            case .volumeClaim(var r): r.metadata = newValue; self = .volumeClaim(r)
            case .service(var r): r.metadata = newValue; self = .service(r)
            case .endpoints(var r): r.metadata = newValue; self = .endpoints(r)
            case .event(var r): r.metadata = newValue; self = .event(r)
            case .secret(var r): r.metadata = newValue; self = .secret(r)
            case .lease(var r): r.metadata = newValue; self = .lease(r)
            case .storageClass(var r): r.metadata = newValue; self = .storageClass(r)
            case .volumeSnapshot(var r): r.metadata = newValue; self = .volumeSnapshot(r)
            }
        }
    }

    public var name: String { metadata.name }

    /// Every problem in the object, each with its field path.
    public func validate() -> [ValidationProblem] {
        switch self {
        case .node(let r): r.validate() + r.status.validate(at: "status")
        case .workload(let r): r.validate()
        case .instance(let r): r.validate() + r.status.validate(at: "status")
        case .volume(let r): r.validate()
        case .volumeClaim(let r): r.validate()
        case .service(let r): r.validate()
        case .endpoints(let r): r.validate()
        case .event(let r): r.validate()
        case .secret(let r): r.validate()
        case .lease(let r): r.validate()
        case .storageClass(let r): r.validate()
        case .volumeSnapshot(let r): r.validate()
        }
    }

    enum KindKey: String, CodingKey { case kind }

    /// Decodes by the document's `kind`; an unknown or missing kind names the field.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: KindKey.self)
        let kind = try container.decode(String.self, forKey: .kind)
        switch kind {
        case NodeSpec.kind: self = .node(try Node(from: decoder))
        case WorkloadSpec.kind: self = .workload(try Workload(from: decoder))
        case InstanceSpec.kind: self = .instance(try Instance(from: decoder))
        case VolumeSpec.kind: self = .volume(try Volume(from: decoder))
        case VolumeClaimSpec.kind: self = .volumeClaim(try VolumeClaim(from: decoder))
        case ServiceSpec.kind: self = .service(try Service(from: decoder))
        case EndpointsSpec.kind: self = .endpoints(try Endpoints(from: decoder))
        case EventSpec.kind: self = .event(try Event(from: decoder))
        case SecretSpec.kind: self = .secret(try Secret(from: decoder))
        case LeaseSpec.kind: self = .lease(try Lease(from: decoder))
        case StorageClassSpec.kind: self = .storageClass(try StorageClass(from: decoder))
        case VolumeSnapshotSpec.kind: self = .volumeSnapshot(try VolumeSnapshot(from: decoder))
        default:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: container, debugDescription: "\"\(kind)\" is not a Capstan kind; expected one of \(AnyResource.kinds.joined(separator: ", "))")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .node(let r): try r.encode(to: encoder)
        case .workload(let r): try r.encode(to: encoder)
        case .instance(let r): try r.encode(to: encoder)
        case .volume(let r): try r.encode(to: encoder)
        case .volumeClaim(let r): try r.encode(to: encoder)
        case .service(let r): try r.encode(to: encoder)
        case .endpoints(let r): try r.encode(to: encoder)
        case .event(let r): try r.encode(to: encoder)
        case .secret(let r): try r.encode(to: encoder)
        case .lease(let r): try r.encode(to: encoder)
        case .storageClass(let r): try r.encode(to: encoder)
        case .volumeSnapshot(let r): try r.encode(to: encoder)
        }
    }
}
