

/// Something that happened to an object, for `capstan describe` and `capstan events`.
public typealias Event = Resource<EventSpec>

public struct EventSpec: ResourceSpec {
    public static let kind = "Event"
    /// The object it is about, as `Kind/name`.
    public var involvedObject: String
    /// A short CamelCase cause: `FailedScheduling`, `BackOff`, `Started`.
    public var reason: String
    public var message: String
    public var type: EventType
    /// The component that reported it: `scheduler`, `agent/node-1`.
    public var source: String
    public var count: Int
    public var lastTimestamp: Timestamp?

    public init(involvedObject: String, reason: String, message: String, type: EventType = .normal, source: String, count: Int = 1, lastTimestamp: Timestamp? = nil) {
        self.involvedObject = involvedObject
        self.reason = reason
        self.message = message
        self.type = type
        self.source = source
        self.count = count
        self.lastTimestamp = lastTimestamp
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case involvedObject, reason, message, type, source, count, lastTimestamp }

    /// As the synthesized decoding (the same fields required), and like every other spec a key
    /// it does not know is refused in a request body, not dropped.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        involvedObject = try container.decode(String.self, forKey: .involvedObject)
        reason = try container.decode(String.self, forKey: .reason)
        message = try container.decode(String.self, forKey: .message)
        type = try container.decode(EventType.self, forKey: .type)
        source = try container.decode(String.self, forKey: .source)
        count = try container.decode(Int.self, forKey: .count)
        lastTimestamp = try container.decodeIfPresent(Timestamp.self, forKey: .lastTimestamp)
    }
}

public enum EventType: String, Codable, Sendable, Hashable {
    case normal = "Normal"
    case warning = "Warning"
}
