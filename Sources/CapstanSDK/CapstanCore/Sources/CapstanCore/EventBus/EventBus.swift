import Synchronization

/// Typed topics, one ``BusChannel`` each. The control plane publishes every store write on
/// ``Topic/resources``; plugins and controllers subscribe.
public final class EventBus: Sendable {
    public let subscriberCapacity: Int
    public let replayWindow: Int
    private let channels = Mutex<[String: any Sendable]>([:])

    /// - Parameters:
    ///   - subscriberCapacity: events a subscriber may have waiting before it is resynced.
    ///   - replayWindow: events per topic kept for subscribers resuming from a revision.
    public init(subscriberCapacity: Int = 4096, replayWindow: Int = 4096) {
        self.subscriberCapacity = subscriberCapacity
        self.replayWindow = replayWindow
    }

    /// The channel of a topic, created on first use. Hold on to it on hot paths.
    /// - Precondition: a topic name is used with one payload type only.
    public func channel<Payload: Sendable>(_ topic: Topic<Payload>, startingRevision: UInt64 = 0) -> BusChannel<Payload> {
        channels.withLock { channels in
            if let existing = channels[topic.name] {
                guard let typed = existing as? BusChannel<Payload> else {
                    preconditionFailure("topic \"\(topic.name)\" is already used with another payload type")
                }
                return typed
            }
            let channel = BusChannel<Payload>(subscriberCapacity: subscriberCapacity, replayWindow: replayWindow, startingRevision: startingRevision)
            channels[topic.name] = channel
            return channel
        }
    }

    /// Publishes on a topic. See ``BusChannel/publish(_:revision:)``.
    @discardableResult
    public func publish<Payload: Sendable>(_ payload: Payload, on topic: Topic<Payload>, revision: UInt64? = nil) -> UInt64 {
        channel(topic).publish(payload, revision: revision)
    }

    /// Subscribes to a topic. See ``BusChannel/subscribe(after:capacity:)``.
    public func subscribe<Payload: Sendable>(to topic: Topic<Payload>, after revision: UInt64? = nil, capacity: Int? = nil) throws(BusError) -> BusSubscription<Payload> {
        try channel(topic).subscribe(after: revision, capacity: capacity)
    }

    /// Finishes every topic: subscriptions end, new ones are refused.
    public func finish() {
        let all = channels.withLock { Array($0.values) }
        for channel in all { (channel as? any FinishableChannel)?.finish() }
    }
}

protocol FinishableChannel: Sendable { func finish() }
extension BusChannel: FinishableChannel {}
