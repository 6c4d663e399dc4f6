import AsyncHTTPClient
@testable import CapstanAPI
import CapstanCore
import CapstanJSON
import NIOCore
import Testing

/// A watch body is cut into lines wherever the network cut it; each line is one event.
@Suite struct WatchStreamTests {
    /// A body that arrives in the given pieces.
    private static func body(_ pieces: [[UInt8]]) -> HTTPClientResponse.Body {
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        for piece in pieces { continuation.yield(ByteBuffer(bytes: piece)) }
        continuation.finish()
        return .stream(stream)
    }

    private static func line(_ revision: UInt64) throws -> [UInt8] {
        let event = Event(name: "e\(revision)", spec: EventSpec(involvedObject: "Node/n", reason: "Test", message: "a \"quoted\" message\\with/slashes", source: "test"))
        return try SortedJSON.encode(WatchEvent(type: .added, revision: revision, object: .event(event))) + [UInt8(ascii: "\n")]
    }

    @Test func linesCutAnywhereComeOutWholeAndInOrder() async throws {
        var all: [UInt8] = []
        for revision: UInt64 in 1...20 { all += try Self.line(revision) }
        all.insert(UInt8(ascii: "\n"), at: 0)  // an empty line is passed over
        for size in [1, 7, 64, 333, all.count] {
            let pieces = stride(from: 0, to: all.count, by: size).map { Array(all[$0..<min($0 + size, all.count)]) }
            var revisions: [UInt64] = []
            for try await event in WatchStream(body: Self.body(pieces)) {
                revisions.append(event.revision)
                guard case .event(let object)? = event.object else { Issue.record("not an Event"); break }
                #expect(object.spec.message == "a \"quoted\" message\\with/slashes")
            }
            #expect(revisions == Array(1...UInt64(20)), "pieces of \(size) bytes")
        }
    }

    @Test func aLineCutOffAtTheEndIsNotAnEvent() async throws {
        let line = try Self.line(1)
        var count = 0
        for try await _ in WatchStream(body: Self.body([line, Array(line.dropLast(10))])) { count += 1 }
        #expect(count == 1)
    }

    @Test func aLineLongerThanTheLimitEndsTheStreamWithAClearError() async throws {
        let endless = [UInt8](repeating: UInt8(ascii: "x"), count: 64)
        var count = 0
        await #expect {
            for try await _ in WatchStream(body: Self.body([try Self.line(1)] + Array(repeating: endless, count: 100)), maxLineBytes: 1_000) { count += 1 }
        } throws: { error in
            "\(error)".contains("a line of over 1000 bytes without a newline")
        }
        #expect(count == 1, "the event before the endless line still came out")
    }

    @Test func aLineThatIsNotAnEventThrows() async throws {
        await #expect(throws: (any Error).self) {
            for try await _ in WatchStream(body: Self.body([Array("{\"type\":\"Added\",\"revision\":\"x\"}\n".utf8)])) {}
        }
    }
}
