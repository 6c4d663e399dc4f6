import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The last committed revision, kept in a small file beside the database (`capstan.db.revision`)
/// so that a database that went backwards — its WAL deleted or truncated, an older copy put in
/// its place — is noticed when the store opens, instead of serving old state without a word.
///
/// The file is rewritten in place after every commit, without an fsync of its own: it survives
/// `kill -9` of the server (the page cache keeps it) and is synced on ``close()``. It is only
/// ever written *after* the database's fsynced commit, so after a power cut it can lag behind
/// the database but never run ahead of it: it never refuses a store that lost nothing.
final class RevisionMarker: Sendable {
    let path: String
    private let descriptor: Int32

    /// Opens (creating 0600) the marker and records `revision`.
    init(path: String, revision: UInt64) throws {
        self.path = path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        descriptor = fd
        record(revision)
        fsync(fd)
    }

    deinit { close(descriptor) }

    /// The revision recorded at `path`, or nil when there is no marker (a new data directory, or
    /// one from before markers existed).
    static func read(_ path: String) throws -> UInt64? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CocoaError(.fileReadNoPermission)
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let value = UInt64(text) else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "\"\(text.prefix(40))\" is not a revision; delete the file if you trust the database"])
        }
        return value
    }

    /// Writes `revision` over the file's one fixed-width line.
    func record(_ revision: UInt64) {
        var text = String(revision)
        text = String(repeating: "0", count: max(0, 20 - text.count)) + text + "\n"
        _ = text.utf8CString.withUnsafeBufferPointer { buffer in
            pwrite(descriptor, buffer.baseAddress, 21, 0)
        }
    }

    /// Syncs the file (on a clean shutdown).
    func sync() { fsync(descriptor) }
}
