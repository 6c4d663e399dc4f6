/// A node's heartbeat (SDK 1.3), like Kubernetes' `Lease` objects in `kube-node-lease`: the
/// agent renews its node's lease (same name as the node) every heartbeat, a write of a few
/// hundred bytes, instead of rewriting the whole Node. The node lifecycle controller declares a
/// node NotReady when its lease has not been renewed within the node timeout.
public typealias Lease = Resource<LeaseSpec>

public struct LeaseSpec: ResourceSpec {
    public static let kind = "Lease"
    /// Who holds it: `node/<name>` for a node's agent.
    public var holderIdentity: String?
    /// How long a renewal counts, in seconds (the holder renews well before).
    public var leaseDurationSeconds: Double
    /// The holder's last renewal.
    public var renewTime: Timestamp?

    public init(holderIdentity: String? = nil, leaseDurationSeconds: Double = 40, renewTime: Timestamp? = nil) {
        self.holderIdentity = holderIdentity
        self.leaseDurationSeconds = leaseDurationSeconds
        self.renewTime = renewTime
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case holderIdentity, leaseDurationSeconds, renewTime }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        holderIdentity = try container.decodeIfPresent(String.self, forKey: .holderIdentity)
        leaseDurationSeconds = try container.decodeIfPresent(Double.self, forKey: .leaseDurationSeconds) ?? 40
        renewTime = try container.decodeIfPresent(Timestamp.self, forKey: .renewTime)
    }

    public func validate(at path: String) -> [ValidationProblem] {
        [ValidationProblem.seconds(leaseDurationSeconds, at: "\(path).leaseDurationSeconds", positive: true)].compactMap { $0 }
    }
}
