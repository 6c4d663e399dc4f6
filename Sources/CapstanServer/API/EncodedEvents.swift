import CapstanAPI
import CapstanCore
import Foundation
import NIOCore
import Synchronization

/// Watch lines by revision, encoded once and shared by every watcher: with N watchers a write is
/// encoded once, not N times.
final class EncodedEvents: Sendable {
    private struct State {
        var lines: [UInt64: ByteBuffer] = [:]
        var order: [UInt64] = []
        var head = 0
    }
    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int = 4096) {
        self.capacity = capacity
    }

    /// The newline-terminated JSON of the event at `revision`.
    func line(_ event: ResourceEvent, revision: UInt64) throws -> ByteBuffer {
        if let cached = state.withLock({ $0.lines[revision] }) { return cached }
        let encoder = JSONEncoder()
        var data = try encoder.encode(WatchEvent(event, revision: revision))
        data.append(UInt8(ascii: "\n"))
        let line = ByteBuffer(bytes: data)
        state.withLock { state in
            guard state.lines[revision] == nil else { return }
            state.lines[revision] = line
            if state.order.count < capacity {
                state.order.append(revision)
            } else {
                state.lines[state.order[state.head]] = nil
                state.order[state.head] = revision
                state.head = (state.head + 1) % capacity
            }
        }
        return line
    }
}
