import CapstanAPI
import CapstanCore
import CapstanStore
import Foundation
import NIOCore

/// Watch lines by revision, encoded once and shared by every watcher: with N watchers a write is
/// encoded once, not N times.
final class EncodedEvents: Sendable {
    private let lines: RevisionRing<ByteBuffer>

    /// With etcd: the object of the event at a revision as stored (JSON without a revision),
    /// so its line is that JSON with the revision put in, not a second encoding.
    let storedForm: (@Sendable (UInt64) -> [UInt8]?)?

    init(capacity: Int = 4096, storedForm: (@Sendable (UInt64) -> [UInt8]?)? = nil) {
        lines = RevisionRing(capacity: capacity)
        self.storedForm = storedForm
    }

    /// `{"type":…,"revision":R,"object":<stored JSON with "revision":R in its metadata>}`, or nil
    /// when the stored form has no metadata object to put the revision in.
    static func spliced(_ stored: [UInt8], change: ResourceEvent.Change, revision: UInt64) -> [UInt8]? {
        let marker = Array(#""metadata":{"#.utf8)
        guard let at = stored.firstRange(of: marker)?.upperBound, at < stored.count else { return nil }
        let type: String
        switch change {
        case .added: type = "Added"
        case .modified: type = "Modified"
        case .deleted: type = "Deleted"
        @unknown default: type = "Modified"
        }
        var line: [UInt8] = []
        line.reserveCapacity(stored.count + 80)
        line += Array(#"{"type":""#.utf8) + Array(type.utf8) + Array(#"","revision":"#.utf8) + Array(String(revision).utf8) + Array(#","object":"#.utf8)
        line += stored[..<at]
        line += Array(#""revision":"#.utf8) + Array(String(revision).utf8)
        if stored[at] != UInt8(ascii: "}") { line.append(UInt8(ascii: ",")) }
        line += stored[at...]
        line += Array("}\n".utf8)
        return line
    }

    /// The newline-terminated JSON of the event at `revision`.
    func line(_ event: ResourceEvent, revision: UInt64) throws -> ByteBuffer {
        if let cached = lines.get(revision) { return cached }
        let line: ByteBuffer
        if let stored = storedForm?(revision), let spliced = Self.spliced(stored, change: event.change, revision: revision) {
            line = ByteBuffer(bytes: spliced)
        } else {
            var data = try JSONEncoder().encode(WatchEvent(event, revision: revision))
            data.append(UInt8(ascii: "\n"))
            line = ByteBuffer(bytes: data)
        }
        lines.put(revision, line)
        return line
    }
}
