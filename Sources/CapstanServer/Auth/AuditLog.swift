import CapstanStore
import Foundation

/// One JSON line per mutating request — who, what, when, the answer — appended to
/// `<data-dir>/audit.log` (0600), like Kubernetes' audit log at its Metadata level.
final class AuditLog: Sendable {
    let path: String
    /// Opened for appending: each line is one `write(2)`, placed at the end by the kernel, so
    /// concurrent requests need no lock of ours (one was contended under load).
    private let descriptor: Int32

    /// Opens (creating it 0600) the log at `path`; a server must not run without its audit log,
    /// so a file that cannot be opened is an error that names it.
    init(path: String) throws(StoreError) {
        self.path = path
        descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw .storage("cannot open the audit log \(path) for appending: \(String(cString: strerror(errno))); check the data directory's owner and permissions")
        }
    }

    deinit { close(descriptor) }

    /// One line: `{"code":…,"method":…,"path":…,"principal":…,"time":…}` (keys sorted, time in
    /// UTC to the second, ISO 8601). Built by hand: it is written for every mutating request,
    /// and a date formatter and a JSON encoder per line were 3 % of a busy server's CPU.
    static func line(time: time_t, principal: String, method: String, path: String, code: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(96 + path.utf8.count + principal.utf8.count)
        bytes += #"{"code":"#.utf8
        bytes += String(code).utf8
        bytes += #","method":"#.utf8
        appendQuoted(method, to: &bytes)
        bytes += #","path":"#.utf8
        appendQuoted(String(path.prefix(512)), to: &bytes)
        bytes += #","principal":"#.utf8
        appendQuoted(principal, to: &bytes)
        bytes += #","time":""#.utf8
        var seconds = time
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func digits(_ value: Int32, _ count: Int) {
            let text = String(value)
            bytes += repeatElement(UInt8(ascii: "0"), count: max(0, count - text.utf8.count))
            bytes += text.utf8
        }
        digits(parts.tm_year + 1900, 4); bytes.append(UInt8(ascii: "-"))
        digits(parts.tm_mon + 1, 2); bytes.append(UInt8(ascii: "-"))
        digits(parts.tm_mday, 2); bytes.append(UInt8(ascii: "T"))
        digits(parts.tm_hour, 2); bytes.append(UInt8(ascii: ":"))
        digits(parts.tm_min, 2); bytes.append(UInt8(ascii: ":"))
        digits(parts.tm_sec, 2)
        bytes += "Z\"}\n".utf8
        return bytes
    }

    /// `text` as a JSON string: quotes, backslashes and control characters escaped; `/` and
    /// non-ASCII left as they are (UTF-8).
    private static let hex = Array("0123456789abcdef".utf8)

    static func appendQuoted(_ text: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(byte)
            case 0..<0x20:
                bytes += #"\u00"#.utf8
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0xF)])
            default:
                bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    func record(principal: String, method: String, path: String, code: Int) {
        let line = Self.line(time: time(nil), principal: principal, method: method, path: path, code: code)
        // A full disk or a failing device: the request has been answered, so the line is
        // dropped (as before) rather than failing it after the fact.
        line.withUnsafeBytes { bytes in _ = writeAll(descriptor, bytes) }
    }
}
