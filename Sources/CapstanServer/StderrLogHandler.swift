#if canImport(Glibc)
import Glibc
#endif
import Logging

/// The log lines of `capstan server`, `agent` and `dev` on standard error, in swift-log's
/// `StreamLogHandler` format (`2026-12-01T02:00:00+0000 info capstan: key=value [module] text`).
///
/// It differs from `StreamLogHandler` in one thing: metadata is formatted when a line is written,
/// not each time it is set. Hummingbird gives every request a logger with its own request id;
/// `StreamLogHandler` formatted that metadata for every request, though almost none logs a line
/// (1 % of a busy server's CPU).
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    /// Where a finished line goes (standard error; a test's buffer in tests).
    let output: @Sendable (String) -> Void

    public init(label: String, metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) {
        self.init(label: label, metadataProvider: metadataProvider, output: Self.writeToStandardError)
    }

    init(label: String, metadataProvider: Logger.MetadataProvider?, output: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided) { _, provided in provided }
        }
        if let explicit = event.metadata, !explicit.isEmpty {
            merged.merge(explicit) { _, explicit in explicit }
        }
        if let error = event.error {
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        let pretty = merged.isEmpty ? "" : " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        output("\(Self.timestamp()) \(event.level)\(label.isEmpty ? "" : " ")\(label):\(pretty) [\(event.source)] \(event.message)\n")
    }

    /// Local time as `%Y-%m-%dT%H:%M:%S%z`, as `StreamLogHandler` writes it.
    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        guard localtime_r(&now, &parts) != nil else { return "<unknown>" }
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// One `write(2)` per line (standard error is unbuffered), so lines from many threads never
    /// mix: the kernel serializes writes to one file, and a pipe takes up to 4 KiB at once.
    @Sendable static func writeToStandardError(_ line: String) {
        var line = line
        line.withUTF8 { bytes in _ = writeAll(STDERR_FILENO, UnsafeRawBufferPointer(bytes)) }
    }
}

/// Writes all of `bytes` to `descriptor` (again after a signal or a short write); false when the
/// file refuses them (a full disk, a closed pipe).
func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return false }
        offset += written
    }
    return true
}
