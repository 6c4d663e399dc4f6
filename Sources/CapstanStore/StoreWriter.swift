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
    private typealias Waiter = @Sendable (Result<AnyResource, StoreError>) -> Void
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
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<AnyResource, StoreError>, Never>) in
            let start = state.withLock { state in
                state.pending.append((operation, { continuation.resume(returning: $0) }))
                if state.draining { return false }
                state.draining = true
                return true
            }
            if start { queue.async { self.drain() } }
        }
        return try result.get()
    }

    /// Applies many writes, queued together (so they fill transactions of ``maxBatch`` instead
    /// of trickling in one task at a time); each result in order, after its commit.
    public func performAll(_ operations: [StoreOperation]) async -> [Result<AnyResource, StoreError>] {
        guard !operations.isEmpty else { return [] }
        return await withCheckedContinuation { (continuation: CheckedContinuation<[Result<AnyResource, StoreError>], Never>) in
            let collected = Collected(count: operations.count, continuation: continuation)
            let start = state.withLock { state in
                for (index, operation) in operations.enumerated() {
                    state.pending.append((operation, { collected.set(index, $0) }))
                }
                if state.draining { return false }
                state.draining = true
                return true
            }
            if start { queue.async { self.drain() } }
        }
    }

    /// The results of a ``performAll(_:)``, resumed once all are in.
    private final class Collected: @unchecked Sendable {
        private var results: [Result<AnyResource, StoreError>?]
        private var left: Int
        private let continuation: CheckedContinuation<[Result<AnyResource, StoreError>], Never>
        private let lock = Mutex(())

        init(count: Int, continuation: CheckedContinuation<[Result<AnyResource, StoreError>], Never>) {
            results = Array(repeating: nil, count: count)
            left = count
            self.continuation = continuation
        }

        func set(_ index: Int, _ result: Result<AnyResource, StoreError>) {
            let done: [Result<AnyResource, StoreError>]? = lock.withLock { _ in
                results[index] = result
                left -= 1
                return left == 0 ? results.map { $0 ?? .failure(.storage("the write was not performed")) } : nil
            }
            if let done { continuation.resume(returning: done) }
        }
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
            for ((_, waiter), result) in zip(batch, results) { waiter(result) }
        }
    }
}
