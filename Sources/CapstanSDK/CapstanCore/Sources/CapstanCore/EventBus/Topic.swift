/// A named stream of one payload type on an ``EventBus``.
public struct Topic<Payload: Sendable>: Sendable, Hashable {
    public let name: String
    public init(_ name: String) { self.name = name }
}

extension Topic where Payload == ResourceEvent {
    /// Every write to the store: one event per write, carrying the store revision.
    public static var resources: Topic<ResourceEvent> { Topic("resources") }
}

/// What a subscriber receives, in order. Frozen: no case will be added (docs/versioning.md).
@frozen
public enum BusDelivery<Payload: Sendable>: Sendable {
    /// One event and its revision; revisions only grow along a subscription.
    case event(revision: UInt64, payload: Payload)
    /// The subscriber fell behind and events up to and including `revision` were dropped for it.
    /// Rebuild state from a fresh list (at `revision` or later); the events that follow have larger
    /// revisions. Applying an event whose revision is not newer than the object's is a no-op.
    case resync(revision: UInt64)
}

/// Why a subscription could not start.
public enum BusError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The replay window no longer holds the events after `requested`; relist, then subscribe
    /// from the list's revision. `oldest` is the oldest revision one can still resume after.
    case revisionTooOld(requested: UInt64, oldest: UInt64)
    /// The channel was finished (shutdown).
    case finished

    public var description: String {
        switch self {
        case .revisionTooOld(let requested, let oldest):
            return "revision \(requested) is too old (the replay window starts after \(oldest)); relist and watch from the list's revision"
        case .finished:
            return "the event bus has shut down"
        }
    }
}

/// A change to a stored object, published once per store write.
public struct ResourceEvent: Sendable, Hashable {
    public enum Change: String, Sendable, Hashable, Codable {
        case added = "Added"
        case modified = "Modified"
        case deleted = "Deleted"
    }

    public var change: Change
    /// The object after the write (before it, for a delete).
    public var object: AnyResource

    public init(_ change: Change, _ object: AnyResource) {
        self.change = change
        self.object = object
    }
}
