import CapstanCore
import Dispatch
import Synchronization

/// Group commit in front of a ``ResourceStore``: writes from many concurrent callers are
/// gathered while the previous transaction commits and go to SQLite together, in one
/// transaction and one fsync. Each caller still gets its own result, only after the commit that
/// holds its write, so an acknowledged write is durable exactly as with a lone
/// ``ResourceStore/write(_:)``. Callers never block a Swift concurrency thread on disk I/O: the
/// transactions run on a queue of their own.
public final class StoreWriter: Sendable {
    public let store: ResourceStore
    /// The most writes one transaction takes.
    public let maxBatch: Int
    private typealias Waiter = CheckedContinuation<Result<AnyResource, StoreError>, Never>
    private struct State {
        var pending: [(StoreOperation, Waiter)] = []
        var draining = false
    }
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "capstan.store.writer")

    public init(store: ResourceStore, maxBatch: Int = 512) {
        self.store = store
        self.maxBatch = maxBatch
    }

    /// Applies one write; returns after it is committed.
    public func perform(_ operation: StoreOperation) async throws(StoreError) -> AnyResource {
        let result = await withCheckedContinuation { (waiter: Waiter) in
            let start = state.withLock { state in
                state.pending.append((operation, waiter))
                if state.draining { return false }
                state.draining = true
                return true
            }
            if start { queue.async { self.drain() } }
        }
        return try result.get()
    }

    public func create(_ object: AnyResource) async throws(StoreError) -> AnyResource { try await perform(.create(object)) }
    public func update(_ object: AnyResource) async throws(StoreError) -> AnyResource { try await perform(.update(object)) }
    public func delete(kind: String, name: String, revision: UInt64? = nil) async throws(StoreError) -> AnyResource {
        try await perform(.delete(kind: kind, name: name, revision: revision))
    }

    /// Reads off the Swift concurrency threads, as writes are.
    public func read<T: Sendable>(_ body: @escaping @Sendable (ResourceStore) throws(StoreError) -> T) async throws(StoreError) -> T {
        let store = self.store
        let result: Result<T, StoreError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: Result { () throws(StoreError) -> T in try body(store) })
            }
        }
        return try result.get()
    }

    private func drain() {
        while true {
            let batch: [(StoreOperation, Waiter)] = state.withLock { state in
                if state.pending.isEmpty {
                    state.draining = false
                    return []
                }
                let count = min(state.pending.count, maxBatch)
                let batch = Array(state.pending.prefix(count))
                state.pending.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return }
            let results = store.write(batch.map(\.0))
            for ((_, waiter), result) in zip(batch, results) { waiter.resume(returning: result) }
        }
    }
}
