@testable import CapstanServer
import Logging
import Synchronization
import Testing

/// The server's log handler writes what swift-log's `StreamLogHandler` writes, line for line;
/// it only formats the metadata later.
@Suite struct StderrLogHandlerTests {
    final class Lines: Sendable {
        let all = Mutex<[String]>([])
        func append(_ line: String) { all.withLock { $0.append(line) } }
    }

    struct Captured: TextOutputStream, Sendable {
        let lines: Lines
        mutating func write(_ string: String) { lines.append(string) }
    }

    /// Both handlers, with the same metadata, log the same lines (the timestamp cut off).
    @Test func linesAreThoseOfStreamLogHandler() throws {
        let ours = Lines()
        let theirs = Lines()
        let provider = Logger.MetadataProvider { ["trace": "t-1"] }
        var mine = Logger(label: "capstan.server") { label in
            StderrLogHandler(label: label, metadataProvider: provider, output: { ours.append($0) })
        }
        var stream = Logger(label: "capstan.server") { label in
            StreamLogHandler(label: label, stream: Captured(lines: theirs), metadataProvider: provider)
        }
        func configure(_ logger: inout Logger) {
            logger[metadataKey: "hb.request.id"] = "42"
            logger[metadataKey: "a"] = .array(["x", "y"])
            logger.logLevel = .debug
        }
        configure(&mine)
        configure(&stream)
        struct Refused: Error {}
        for logger in [mine, stream] {
            logger.info("started")
            logger.debug("a \"quoted\" word", metadata: ["hb.request.id": "override", "z": .dictionary(["k": "v"])])
            logger.trace("below the level")
            logger.error("failed", error: Refused())
        }
        let strip = { (line: String) in String(line.drop { $0 != " " }) }
        let mineLines = ours.all.withLock { $0 }.map(strip)
        let streamLines = theirs.all.withLock { $0 }.map(strip)
        #expect(mineLines.count == 3)
        #expect(mineLines == streamLines)
        #expect(mineLines.first == #" info capstan.server: a=["x", "y"] hb.request.id=42 trace=t-1 [CapstanServerTests] started"# + "\n")
    }

    /// The timestamp is local time, as StreamLogHandler writes it: `2026-12-01T02:00:00+0000`.
    @Test func timestampHasTheStreamLogHandlersForm() {
        let stamp = StderrLogHandler.timestamp()
        #expect(stamp.count == 24, "\(stamp)")
        #expect(stamp.dropFirst(10).first == "T")
    }
}
