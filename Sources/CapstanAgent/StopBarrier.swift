import Synchronization

/// Names whose stop is in progress. A new instance of the same name (scaled down and up again,
/// re-created after a delete) waits here until the old one is gone from the runtime, so the two
/// never share a runtime id.
final class StopBarrier: Sendable {
    private let state = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    func begin(_ name: String) {
        state.withLock { if $0[name] == nil { $0[name] = [] } }
    }

    func end(_ name: String) {
        let waiters = state.withLock { $0.removeValue(forKey: name) } ?? []
        for waiter in waiters { waiter.resume() }
    }

    func waitUntilStopped(_ name: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let stopping = state.withLock { state -> Bool in
                guard state[name] != nil else { return false }
                state[name]!.append(continuation)
                return true
            }
            if !stopping { continuation.resume() }
        }
    }
}
