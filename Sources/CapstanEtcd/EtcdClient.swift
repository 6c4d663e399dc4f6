import AsyncHTTPClient
import CapstanAPI
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOPosix
import Synchronization

/// A client of etcd's v3 API through its JSON gateway (`/v3/…` on the client port), which every
/// etcd 3.4 serves: range, put, delete, transactions (compare-and-swap), leases, watches that
/// resume from a revision, compaction. Keys and values are bytes (base64 on the wire); revisions
/// are etcd's — one global counter per cluster, which Capstan uses as its store revision.
///
/// Several endpoints may be given (the members of a cluster): a request that cannot reach one
/// goes to the next, and the one that answered is tried first from then on.
///
/// Why the gateway and not gRPC: the gateway needs nothing but the HTTP client Capstan already
/// links (no protobuf code generation, no second networking stack), and etcd serves the same
/// operations and semantics on it, watches included (a stream of newline-separated messages).
public final class EtcdClient: Sendable {
    public let endpoints: [String]
    private let preferred = Mutex(0)
    /// How long one unary request may take.
    public let timeout: TimeAmount

    /// The TLS this client speaks to every member with; nil: plain HTTP.
    public let tls: EtcdTLS?
    /// This client's two pools (``pool(tls:streaming:failsOver:)``), looked up once: the key hashes the
    /// PEM files, which no request should pay for.
    private let unary: HTTPClient
    private let streaming: HTTPClient

    private struct PoolKey: Hashable {
        var tls: EtcdTLS?
        var streaming: Bool
        /// Several members: a connection refused moves on to the next member at once.
        var failsOver: Bool
    }

    /// HTTP clients, one for unary calls and one for watches per TLS setting: shared by every
    /// client of the process and never shut down (a client is cheap to make, and no deinit
    /// blocks a thread on a shutdown). Watches hold a connection for their life, so they have a
    /// pool of their own and never queue the unary calls (a lease renewal above all) behind them.
    private static let pools = Mutex<[PoolKey: HTTPClient]>([:])

    private static func pool(tls: EtcdTLS?, streaming: Bool, failsOver: Bool) -> HTTPClient {
        pools.withLock { pools in
            let key = PoolKey(tls: tls, streaming: streaming, failsOver: failsOver)
            if let client = pools[key] { return client }
            var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(2)))
            configuration.tlsConfiguration = tls?.configuration
            if streaming {
                configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1024)
            }
            // AsyncHTTPClient retries a refused connection with backoff until its connect
            // timeout, and under load well past it: a dead first member cost every call 2-10 s
            // before the next member was tried. With several members, ``send`` tries the next
            // at once instead (as etcd's own client does); with one, the retries stay.
            configuration.connectionPool.retryConnectionEstablishment = !failsOver
            // No tracing: see HTTPClients (the span attributes cost CPU even with no tracer).
            configuration.tracing.tracer = nil
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            pools[key] = client
            return client
        }
    }

    /// - Parameters:
    ///   - endpoints: `http://host:port` (or `https://`), one per member; with `tls` every one
    ///     is reached over HTTPS.
    ///   - tls: the CA the members' certificates are checked against and the client
    ///     certificate they ask for (etcd's `--client-cert-auth`).
    public init(endpoints: [String], timeout: TimeAmount = .seconds(10), tls: EtcdTLS? = nil) {
        self.endpoints = endpoints.map { endpoint in
            var endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
            if tls != nil, endpoint.hasPrefix("http://") { endpoint = "https://" + endpoint.dropFirst(7) }
            return endpoint
        }
        self.timeout = timeout
        self.tls = tls
        unary = Self.pool(tls: tls, streaming: false, failsOver: self.endpoints.count > 1)
        streaming = Self.pool(tls: tls, streaming: true, failsOver: self.endpoints.count > 1)
    }

    /// `etcd://host:port[,host:port…]` (or `http://…` / `https://…`, comma-separated) as
    /// endpoints: `https://` for every member when `tls`, else `http://`.
    public static func endpoints(from url: String, tls: Bool = false) throws -> [String] {
        var rest = url
        if rest.hasPrefix("etcd://") { rest = String(rest.dropFirst(7)) }
        let parts = rest.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !parts.isEmpty, parts.count <= 16 else { throw EtcdError.badArgument("\"\(url)\": give 1 to 16 members as etcd://host:port[,host:port…]") }
        return try parts.map { part in
            var address = part
            if address.hasPrefix("http://") {
                guard !tls else { throw EtcdError.badArgument("\"\(part)\" says http://, but etcd's TLS was asked for: write etcd://host:port") }
                address = String(address.dropFirst(7))
            } else if address.hasPrefix("https://") {
                guard tls else { throw EtcdError.badArgument("\"\(part)\" says https://: give the CA that signed etcd's certificates (--etcd-cafile)") }
                address = String(address.dropFirst(8))
            }
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port), colon != address.startIndex else {
                throw EtcdError.badArgument("\"\(part)\" is not host:port")
            }
            return (tls ? "https://" : "http://") + address
        }
    }

    /// True when `endpoint` (`http://host:port`) is on this machine's loopback.
    public static func isLoopback(_ endpoint: String) -> Bool {
        let host = URL(string: endpoint)?.host ?? ""
        return host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }

    // MARK: Types

    /// One key as etcd holds it.
    public struct KeyValue: Sendable, Hashable {
        public var key: [UInt8]
        public var value: [UInt8]
        public var createRevision: Int64
        public var modRevision: Int64
        public var version: Int64
        public var lease: Int64

        public var keyString: String { String(decoding: key, as: UTF8.self) }
    }

    /// A condition of a transaction.
    public struct Compare: Sendable, Hashable {
        public enum Target: String, Sendable { case modRevision = "MOD", createRevision = "CREATE", version = "VERSION" }
        public enum Result: String, Sendable { case equal = "EQUAL", greater = "GREATER", less = "LESS", notEqual = "NOT_EQUAL" }
        public var key: [UInt8]
        public var target: Target
        public var result: Result
        public var number: Int64

        public init(key: [UInt8], _ target: Target, _ result: Result, _ number: Int64) {
            (self.key, self.target, self.result, self.number) = (key, target, result, number)
        }

        /// The key does not exist.
        public static func absent(_ key: [UInt8]) -> Compare { Compare(key: key, .createRevision, .equal, 0) }
        /// The key was last written at `revision`.
        public static func unchanged(_ key: [UInt8], since revision: Int64) -> Compare { Compare(key: key, .modRevision, .equal, revision) }

        var json: [String: Any] {
            var object: [String: Any] = ["key": Data(key).base64EncodedString(), "target": target.rawValue, "result": result.rawValue]
            switch target {
            case .modRevision: object["mod_revision"] = String(number)
            case .createRevision: object["create_revision"] = String(number)
            case .version: object["version"] = String(number)
            }
            return object
        }
    }

    /// An operation of a transaction.
    public enum Operation: Sendable, Hashable {
        case put(key: [UInt8], value: [UInt8], lease: Int64?)
        case delete(key: [UInt8])
        case get(key: [UInt8])

        var json: [String: Any] {
            switch self {
            case .put(let key, let value, let lease):
                var put: [String: Any] = ["key": Data(key).base64EncodedString(), "value": Data(value).base64EncodedString()]
                if let lease { put["lease"] = String(lease) }
                return ["request_put": put]
            case .delete(let key):
                return ["request_delete_range": ["key": Data(key).base64EncodedString(), "prev_kv": true]]
            case .get(let key):
                return ["request_range": ["key": Data(key).base64EncodedString()]]
            }
        }
    }

    public struct TxnResult: Sendable {
        public var succeeded: Bool
        /// The cluster's revision after the transaction (its own, when it wrote).
        public var revision: Int64
        /// Keys read by `get` operations of the branch that ran, and those `delete` removed.
        public var kvs: [KeyValue]
    }

    public struct WatchEvent: Sendable, Hashable {
        public enum Kind: Sendable, Hashable { case put, delete }
        public var kind: Kind
        public var kv: KeyValue
        /// For a delete (with `prevKV`): the key as it was. Puts carry none (their value is new).
        public var previous: KeyValue?
    }

    // MARK: KV

    /// The keys from `key` (alone, or up to `rangeEnd`), at `revision` (0: now), and the
    /// cluster's revision they were read at.
    public func range(_ key: [UInt8], rangeEnd: [UInt8]? = nil, revision: Int64 = 0, limit: Int64 = 0) async throws -> (kvs: [KeyValue], revision: Int64) {
        var body: [String: Any] = ["key": Data(key).base64EncodedString()]
        if let rangeEnd { body["range_end"] = Data(rangeEnd).base64EncodedString() }
        if revision > 0 { body["revision"] = String(revision) }
        if limit > 0 { body["limit"] = String(limit) }
        let answer = try await call("/v3/kv/range", body)
        return (Self.kvs(answer["kvs"]), Self.revision(of: answer))
    }

    /// Every key under `prefix`.
    public func prefix(_ prefix: String, revision: Int64 = 0) async throws -> (kvs: [KeyValue], revision: Int64) {
        try await range(Array(prefix.utf8), rangeEnd: Self.prefixEnd(Array(prefix.utf8)), revision: revision)
    }

    /// Writes a key; returns the revision of the write.
    @discardableResult
    public func put(_ key: [UInt8], _ value: [UInt8], lease: Int64? = nil) async throws -> Int64 {
        var body: [String: Any] = ["key": Data(key).base64EncodedString(), "value": Data(value).base64EncodedString()]
        if let lease { body["lease"] = String(lease) }
        return Self.revision(of: try await call("/v3/kv/put", body))
    }

    /// Deletes a key (or a range); returns how many went.
    @discardableResult
    public func delete(_ key: [UInt8], rangeEnd: [UInt8]? = nil) async throws -> Int64 {
        var body: [String: Any] = ["key": Data(key).base64EncodedString()]
        if let rangeEnd { body["range_end"] = Data(rangeEnd).base64EncodedString() }
        return Self.int(try await call("/v3/kv/deleterange", body)["deleted"])
    }

    /// If every comparison holds, `success` runs, else `failure` — atomically.
    public func txn(_ compare: [Compare], success: [Operation], failure: [Operation] = []) async throws -> TxnResult {
        let body: [String: Any] = ["compare": compare.map(\.json), "success": success.map(\.json), "failure": failure.map(\.json)]
        let answer = try await call("/v3/kv/txn", body)
        var kvs: [KeyValue] = []
        for case let response as [String: Any] in answer["responses"] as? [Any] ?? [] {
            if let range = response["response_range"] as? [String: Any] { kvs += Self.kvs(range["kvs"]) }
            if let deleted = response["response_delete_range"] as? [String: Any] { kvs += Self.kvs(deleted["prev_kvs"]) }
        }
        return TxnResult(succeeded: answer["succeeded"] as? Bool ?? false, revision: Self.revision(of: answer), kvs: kvs)
    }

    /// Forgets history before `revision`: watches from an older revision are told so.
    public func compact(_ revision: Int64) async throws {
        _ = try await call("/v3/kv/compaction", ["revision": String(revision), "physical": true])
    }

    // MARK: Leases

    /// A lease of `ttl` seconds; keys written with it go when it expires.
    public func grantLease(ttl: Int64) async throws -> Int64 {
        guard (1...3600).contains(ttl) else { throw EtcdError.badArgument("lease TTL \(ttl): 1 to 3600 seconds") }
        let id = Self.int(try await call("/v3/lease/grant", ["TTL": String(ttl)])["ID"])
        guard id != 0 else { throw EtcdError.unexpected("etcd granted no lease") }
        return id
    }

    /// Renews a lease; returns its new TTL, 0 when it has expired (it cannot be renewed).
    /// - Parameter timeout: how long the renewal may take (a leader gives less than its TTL).
    public func keepAlive(lease: Int64, timeout: TimeAmount? = nil) async throws -> Int64 {
        let answer = try await call("/v3/lease/keepalive", ["ID": String(lease)], timeout: timeout)
        // A stream method: its errors (no leader, …) come inside a 200 answer.
        if let error = answer["error"] as? [String: Any] {
            throw EtcdError.refused("/v3/lease/keepalive", error["message"] as? String ?? "\(error)")
        }
        return Self.int((answer["result"] as? [String: Any])?["TTL"])
    }

    public func revoke(lease: Int64) async throws {
        _ = try await call("/v3/lease/revoke", ["ID": String(lease)])
    }

    // MARK: Watch

    /// The changes to `key` (or the range to `rangeEnd`) from `startRevision` on, in batches as
    /// etcd sends them, until the stream is cancelled. A revision already compacted ends the
    /// stream with ``EtcdError/compacted(_:)`` (Capstan answers 410 Gone for it).
    ///
    /// - Parameter idleTimeout: a watch that receives nothing for this long ends with
    ///   ``EtcdError/unavailable(_:)`` (and the next member is asked first next time): a member
    ///   cut off the network sends neither data nor a reset, and its connection would otherwise
    ///   wait for ever. The caller makes the watch again from its last revision — to a live
    ///   member it costs one request per period while nothing changes.
    public func watch(_ key: [UInt8], rangeEnd: [UInt8]? = nil, startRevision: Int64, prevKV: Bool = false, idleTimeout: Duration = .seconds(10)) -> AsyncThrowingStream<[WatchEvent], any Error> {
        var create: [String: Any] = ["key": Data(key).base64EncodedString(), "start_revision": String(startRevision), "progress_notify": true]
        if prevKV { create["prev_kv"] = true }
        if let rangeEnd { create["range_end"] = Data(rangeEnd).base64EncodedString() }
        let body = Data(Self.serialize(["create_request": create]).utf8)
        return AsyncThrowingStream { continuation in
            let lastHeard = LastHeard()
            let task = Task {
                do {
                    // Only from a member that has a leader (a partitioned one would stay silent).
                    let response = try await self.send("/v3/watch", body, timeout: .hours(24 * 365), streaming: true, headers: [("Grpc-Metadata-hasleader", "true")])
                    var pending: [UInt8] = []
                    var scanned = 0
                    for try await buffer in response.body {
                        lastHeard.at.withLock { $0 = .now }
                        pending += buffer.readableBytesView
                        // Only the new bytes are searched for the end of a message.
                        while let newline = pending[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                            let line = Array(pending[..<newline])
                            pending.removeFirst(newline + 1)
                            scanned = 0
                            guard !line.isEmpty else { continue }
                            guard let message = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { continue }
                            if let error = message["error"] as? [String: Any] {
                                throw EtcdError.unexpected("watch: \(error["message"] as? String ?? "\(error)")")
                            }
                            guard let result = message["result"] as? [String: Any] else { continue }
                            let compacted = Self.int(result["compact_revision"])
                            if compacted > 0 { throw EtcdError.compacted(compacted) }
                            if result["canceled"] as? Bool == true {
                                throw EtcdError.unexpected("etcd cancelled the watch: \(result["cancel_reason"] as? String ?? "no reason given")")
                            }
                            let events = (result["events"] as? [Any] ?? []).compactMap { item -> WatchEvent? in
                                guard let event = item as? [String: Any], let kv = Self.kv(event["kv"]) else { return nil }
                                // The value as it was matters only for a delete (a put carries the new one).
                                let isDelete = event["type"] as? String == "DELETE"
                                return WatchEvent(kind: isDelete ? .delete : .put, kv: kv, previous: isDelete ? Self.kv(event["prev_kv"]) : nil)
                            }
                            if !events.isEmpty { continuation.yield(events) }
                        }
                        scanned = pending.count
                    }
                    self.tryAnotherMember()
                    continuation.finish(throwing: EtcdError.unavailable("etcd ended the watch"))
                } catch {
                    // A member that cancelled or broke a watch (it lost its leader, or stops)
                    // is not asked first next time.
                    if case EtcdError.compacted = error {} else if !Task.isCancelled { self.tryAnotherMember() }
                    continuation.finish(throwing: error)
                }
            }
            // The watchdog: a silent connection is given up after `idleTimeout`.
            let watchdog = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: idleTimeout / 4)
                    if ContinuousClock.now - lastHeard.at.withLock({ $0 }) > idleTimeout {
                        self.tryAnotherMember()
                        continuation.finish(throwing: EtcdError.unavailable("the watch heard nothing for \(idleTimeout); made again"))
                        task.cancel()
                        return
                    }
                }
            }
            continuation.onTermination = { _ in
                task.cancel()
                watchdog.cancel()
            }
        }
    }

    /// When a watch last received anything.
    final class LastHeard: Sendable {
        let at = Mutex(ContinuousClock.now)
    }

    // MARK: Wire

    /// JSON of the request bodies this client builds (strings, numbers, booleans, arrays and
    /// objects): written directly, several times cheaper than `JSONSerialization` on Linux,
    /// which bridges every value. Strings are base64 or fixed words here, but are escaped fully.
    static func serialize(_ value: Any) -> String {
        var out = ""
        out.reserveCapacity(256)
        write(value, into: &out)
        return out
    }

    private static func write(_ value: Any, into out: inout String) {
        switch value {
        case let text as String:
            out.append("\"")
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out.append("\\\"")
                case "\\": out.append("\\\\")
                case "\n": out.append("\\n")
                case "\r": out.append("\\r")
                case "\t": out.append("\\t")
                case let c where c.value < 0x20: out.append(String(format: "\\u%04x", c.value))
                default: out.unicodeScalars.append(scalar)
                }
            }
            out.append("\"")
        case let flag as Bool:
            out.append(flag ? "true" : "false")
        case let number as Int:
            out.append(String(number))
        case let number as Int64:
            out.append(String(number))
        case let list as [Any]:
            out.append("[")
            for (index, item) in list.enumerated() {
                if index > 0 { out.append(",") }
                write(item, into: &out)
            }
            out.append("]")
        case let object as [String: Any]:
            out.append("{")
            for (index, (key, item)) in object.enumerated() {
                if index > 0 { out.append(",") }
                write(key, into: &out)
                out.append(":")
                write(item, into: &out)
            }
            out.append("}")
        default:
            out.append("null")
        }
    }

    /// The next member is tried first from now on.
    func tryAnotherMember() {
        guard endpoints.count > 1 else { return }
        preferred.withLock { $0 = ($0 + 1) % endpoints.count }
    }

    private func call(_ path: String, _ body: [String: Any], timeout: TimeAmount? = nil) async throws -> [String: Any] {
        let data = Data(Self.serialize(body).utf8)
        let response = try await send(path, data, timeout: timeout ?? self.timeout)
        let bytes = try await response.body.collect(upTo: 64 << 20)
        guard let object = try JSONSerialization.jsonObject(with: Data(buffer: bytes)) as? [String: Any] else {
            throw EtcdError.unexpected("\(path): the answer is not a JSON object")
        }
        if response.status != .ok {
            let message = object["message"] as? String ?? object["error"] as? String ?? "\(response.status)"
            throw EtcdError.refused(path, message)
        }
        return object
    }

    /// Sends to the preferred member, then to the others while none can be connected to. A
    /// request that may have reached a member (it timed out or broke after connecting) is not
    /// sent again: etcd may have applied it, and a retry would answer about the retry (a create
    /// told `alreadyExists` of its own write). The caller gets ``EtcdError/outcomeUnknown(_:)``.
    private func send(_ path: String, _ body: Data, timeout: TimeAmount, streaming: Bool = false, headers: [(String, String)] = []) async throws -> HTTPClientResponse {
        let first = preferred.withLock { $0 }
        // One deadline for every member tried: a caller's timeout bounds the whole call.
        let deadline = NIODeadline.now() + timeout
        var failures: [String] = []
        for offset in 0..<endpoints.count {
            let index = (first + offset) % endpoints.count
            var request = HTTPClientRequest(url: endpoints[index] + path)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            request.body = .bytes(ByteBuffer(bytes: body))
            do {
                let response = try await (streaming ? self.streaming : unary).execute(request, deadline: deadline)
                // 503 is gRPC's Unavailable. "no leader": this member could not propose it, so
                // nothing was applied and another member may answer. Others ("leader changed",
                // "request timed out") may have been applied: the outcome is unknown.
                if response.status == .serviceUnavailable && !streaming {
                    let text = String(buffer: (try? await response.body.collect(upTo: 1 << 16)) ?? ByteBuffer())
                    if text.contains("no leader") && offset < endpoints.count - 1 {
                        failures.append("\(endpoints[index]): no leader")
                        continue
                    }
                    throw EtcdError.outcomeUnknown("\(endpoints[index])\(path): \(text)")
                }
                if index != first { preferred.withLock { $0 = index } }
                return response
            } catch {
                if let error = error as? EtcdError { throw error }
                guard Self.neverConnected(error) else {
                    // etcd with --client-cert-auth closes a TLS 1.3 connection that showed no
                    // certificate once the request arrives: name the likely cause.
                    let closed = ["remoteConnectionClosed", "Connection reset by peer"].contains { "\(error)".contains($0) }
                    let hint = !closed ? ""
                        : tls == nil ? " (a member that serves TLS closes plain HTTP connections: give --etcd-cafile, and --etcd-certfile and --etcd-keyfile if it asks for client certificates)"
                        : tls?.certificatePEM == nil ? " (a member started with --client-cert-auth closes connections that show no client certificate: give --etcd-certfile and --etcd-keyfile)" : ""
                    throw EtcdError.outcomeUnknown("\(endpoints[index])\(path): \(error)\(hint)")
                }
                failures.append("\(endpoints[index]): \(error)")
            }
        }
        throw EtcdError.unavailable("no etcd member answered (\(failures.joined(separator: "; ")))")
    }

    static func neverConnected(_ error: any Error) -> Bool { APIClient.neverConnected(error) }

    static func revision(of answer: [String: Any]) -> Int64 { int((answer["header"] as? [String: Any])?["revision"]) }

    /// proto3 JSON: 64-bit numbers are strings, zero values are left out.
    static func int(_ value: Any?) -> Int64 {
        if let text = value as? String { return Int64(text) ?? 0 }
        if let number = value as? NSNumber { return number.int64Value }
        return 0
    }

    static func bytes(_ value: Any?) -> [UInt8] {
        guard let text = value as? String, let data = Data(base64Encoded: text) else { return [] }
        return Array(data)
    }

    static func kv(_ value: Any?) -> KeyValue? {
        guard let object = value as? [String: Any] else { return nil }
        return KeyValue(key: bytes(object["key"]), value: bytes(object["value"]), createRevision: int(object["create_revision"]),
                        modRevision: int(object["mod_revision"]), version: int(object["version"]), lease: int(object["lease"]))
    }

    static func kvs(_ value: Any?) -> [KeyValue] { (value as? [Any] ?? []).compactMap(kv) }

    /// The end of the range of keys that start with `prefix` (etcd's `range_end` for a prefix).
    public static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }
}

public enum EtcdError: Error, Sendable, CustomStringConvertible, Equatable {
    /// No member could be reached.
    case unavailable(String)
    /// A member answered with an error.
    case refused(String, String)
    /// The watch's start revision was compacted: relist.
    case compacted(Int64)
    case badArgument(String)
    case unexpected(String)
    /// The request may or may not have been applied (it broke after it was sent): read again.
    case outcomeUnknown(String)

    public var description: String {
        switch self {
        case .unavailable(let why): "etcd unavailable: \(why)"
        case .refused(let path, let why): "etcd refused \(path): \(why)"
        case .compacted(let revision): "etcd compacted its history up to revision \(revision); list again"
        case .badArgument(let why): why
        case .unexpected(let why): "etcd: \(why)"
        case .outcomeUnknown(let why): "etcd did not answer, the request may have been applied; read again: \(why)"
        }
    }
}
