import AsyncHTTPClient
import CapstanJSON
import NIOCore

/// The events of one watch, decoded as they are read: newline-delimited ``WatchEvent``s from
/// the response body. Iterating it reads the body; stopping (leaving the loop, or the task
/// being cancelled) ends the request and closes its connection.
///
/// Each event is decoded in the consumer's own task when it asks for it: no task decodes ahead
/// into a buffer (one hand-over between tasks per event was a sixth of a watching client's
/// CPU), and a slow consumer holds the server back through TCP instead of growing a buffer here
/// without bound — the server resyncs a watcher that falls too far behind.
public struct WatchStream: AsyncSequence, Sendable {
    public typealias Element = WatchEvent

    /// The longest line taken: an object is at most 4 MiB (the API's body limit), so a line
    /// this long is a broken stream, not an event.
    public static let maxLineBytes = 64 << 20

    let body: HTTPClientResponse.Body
    let maxLineBytes: Int

    init(body: HTTPClientResponse.Body, maxLineBytes: Int = WatchStream.maxLineBytes) {
        self.body = body
        self.maxLineBytes = maxLineBytes
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(chunks: body.makeAsyncIterator(), maxLineBytes: maxLineBytes)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var chunks: HTTPClientResponse.Body.AsyncIterator
        /// What has been read and not yet decoded: lines from `start`; no newline before
        /// `searched`.
        var pending: [UInt8] = []
        var start = 0
        var searched = 0
        let decoder = APIClient.responseDecoder()
        let maxLineBytes: Int

        init(chunks: HTTPClientResponse.Body.AsyncIterator, maxLineBytes: Int) {
            self.chunks = chunks
            self.maxLineBytes = maxLineBytes
        }

        public mutating func next() async throws -> WatchEvent? {
            while true {
                if let newline = pending[searched...].firstIndex(of: UInt8(ascii: "\n")) {
                    let line = start..<newline
                    start = newline + 1
                    searched = start
                    if line.isEmpty { continue }
                    let decoder = decoder
                    return try pending.withUnsafeBytes { bytes in
                        try decoder.decode(WatchEvent.self, fromBytes: UnsafeRawBufferPointer(rebasing: bytes[line]))
                    }
                }
                // The decoded lines go once per chunk, not once per line.
                pending.removeSubrange(..<start)
                start = 0
                searched = pending.count
                // What is left is part of one line: bounded, whatever the server sends.
                guard pending.count <= maxLineBytes else {
                    throw APIError(status: 0, body: ErrorBody(code: 0, reason: "BadResponse", message: "the watch stream sent a line of over \(maxLineBytes) bytes without a newline; watch again"))
                }
                guard let chunk = try await chunks.next() else { return nil }
                pending.append(contentsOf: chunk.readableBytesView)
            }
        }
    }
}
