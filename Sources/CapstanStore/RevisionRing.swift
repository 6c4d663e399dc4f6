import Synchronization

/// The values of the latest `capacity` revisions, the oldest dropped first: bounded memory for
/// what is looked up by revision soon after it was made (a watch line, an event's stored JSON).
public final class RevisionRing<Value: Sendable>: Sendable {
    private struct State {
        var values: [UInt64: Value] = [:]
        var order: [UInt64] = []
        var head = 0
    }
    private let state = Mutex(State())
    public let capacity: Int

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Keeps `value` for `revision`; a revision already held keeps its first value.
    public func put(_ revision: UInt64, _ value: Value) {
        state.withLock { state in
            guard state.values[revision] == nil else { return }
            state.values[revision] = value
            if state.order.count < capacity {
                state.order.append(revision)
            } else {
                state.values[state.order[state.head]] = nil
                state.order[state.head] = revision
                state.head = (state.head + 1) % capacity
            }
        }
    }

    public func get(_ revision: UInt64) -> Value? { state.withLock { $0.values[revision] } }
}
