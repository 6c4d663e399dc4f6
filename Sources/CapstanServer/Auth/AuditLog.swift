import Foundation
import Synchronization

/// One JSON line per mutating request — who, what, when, the answer — appended to
/// `<data-dir>/audit.log` (0600), like Kubernetes' audit log at its Metadata level.
final class AuditLog: Sendable {
    let path: String
    private let handle: Mutex<FileHandle?>

    init(path: String) {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        let handle = FileHandle(forWritingAtPath: path)
        _ = try? handle?.seekToEnd()
        self.handle = Mutex(handle)
    }

    struct Line: Encodable {
        var time: String
        var principal: String
        var method: String
        var path: String
        var code: Int
    }

    func record(principal: String, method: String, path: String, code: Int) {
        let line = Line(time: Date().formatted(.iso8601), principal: principal, method: method, path: String(path.prefix(512)), code: code)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard var data = try? encoder.encode(line) else { return }
        data.append(UInt8(ascii: "\n"))
        handle.withLock { handle in try? handle?.write(contentsOf: data) }
    }
}
