import CapstanAPI
import CapstanCore
import CapstanJSON
import CapstanStore
import Foundation
import NIOCore

/// Watch lines by revision, encoded once and shared by every watcher: with N watchers a write is
/// encoded once, not N times — and not even once while the store still holds the JSON it wrote
/// (``StoredForms``): the line is that JSON inside the event's envelope.
final class EncodedEvents: Sendable {
    private let lines: RevisionRing<ByteBuffer>
    let forms: StoredForms?

    init(capacity: Int = 4096, forms: StoredForms? = nil) {
        lines = RevisionRing(capacity: capacity)
        self.forms = forms
    }

    /// `{"type":…,"revision":R,"object":<object>}` and a newline, for `object` the JSON of the
    /// event's object with its revision.
    static func line(object: [UInt8], change: ResourceEvent.Change, revision: UInt64) -> [UInt8] {
        let type: String
        switch change {
        case .added: type = "Added"
        case .modified: type = "Modified"
        case .deleted: type = "Deleted"
        @unknown default: type = "Modified"
        }
        var line: [UInt8] = []
        line.reserveCapacity(object.count + 64)
        line += Array(#"{"type":""#.utf8) + Array(type.utf8) + Array(#"","revision":"#.utf8) + Array(String(revision).utf8) + Array(#","object":"#.utf8)
        line += object
        line += Array("}\n".utf8)
        return line
    }

    /// The newline-terminated JSON of the event at `revision`.
    func line(_ event: ResourceEvent, revision: UInt64) throws -> ByteBuffer {
        if let cached = lines.get(revision) { return cached }
        let line: ByteBuffer
        if let object = forms?.object(at: revision) {
            line = ByteBuffer(bytes: Self.line(object: object, change: event.change, revision: revision))
        } else {
            var data = try SortedJSON.encode(WatchEvent(event, revision: revision))
            data.append(UInt8(ascii: "\n"))
            line = ByteBuffer(bytes: data)
        }
        lines.put(revision, line)
        return line
    }
}
