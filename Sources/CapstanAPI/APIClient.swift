import AsyncHTTPClient
import CapstanCore
import CapstanJSON
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A failed API call: the server's answer (status and ``ErrorBody``), or a transport failure.
public struct APIError: Error, Sendable, CustomStringConvertible {
    /// The HTTP status; 0 when the server could not be reached.
    public var status: Int
    public var body: ErrorBody

    public init(status: Int, body: ErrorBody) {
        self.status = status
        self.body = body
    }

    static func unreachable(_ server: String, _ error: any Error) -> APIError {
        let text = String(describing: error)
        let reason: String
        if text.contains("Connection refused") || text.contains("errno: 111") {
            reason = "connection refused. Is `capstan server` (or `capstan dev`) running there? Set --server or CAPSTAN_SERVER"
        } else if text.contains("handshake") || text.contains("certificate") || text.contains("CERTIFICATE") || text.contains("SSL") {
            reason = "the TLS handshake failed (\(text)). Trust the cluster CA: the server's entry in ~/.capstan/config, or CAPSTAN_CA=<data-dir>/pki/ca.crt"
        } else {
            reason = "\(text). Is `capstan server` (or `capstan dev`) running? Set --server or CAPSTAN_SERVER"
        }
        return APIError(status: 0, body: ErrorBody(code: 0, reason: "Unreachable", message: "cannot reach the Capstan server at \(server): \(reason)"))
    }

    public var description: String {
        ([body.message] + body.problems.map { "  \($0)" }).joined(separator: "\n")
    }
}

/// The Capstan HTTP API, for the CLI and the node agent. Every method is one request; none
/// retries, so callers decide what a conflict means.
public struct APIClient: Sendable {
    /// `http://host:port`, without a trailing slash (several, comma-separated, for a cluster
    /// of servers).
    public let server: String
    /// The servers to try, in order: a request that cannot connect to one goes to the next
    /// (any request), as does a read that fails after connecting; the one that answered is
    /// tried first from then on. A write that may have reached a server is not sent again (it
    /// may have been applied): its error is returned.
    public let servers: [String]
    private let preferred: Preferred
    /// Sent as `Authorization: Bearer <token>` on every request.
    public let token: String?
    private let http: HTTPClient
    private let streamingHTTP: HTTPClient
    private let timeout: TimeAmount

    /// Watches hold a connection each for as long as they run and may be quiet for hours: they
    /// use a client of their own, without a read timeout and with room for many streams
    /// (``HTTPClients``).
    /// - Parameters:
    ///   - caPEM: for `https://` servers, the cluster CA to trust (and nothing else); nil trusts
    ///     the system's roots.
    ///   - identity: a client certificate to present (the server's, when it calls agents).
    public init(server: String, token: String? = nil, caPEM: String? = nil, identity: TLSIdentity? = nil, timeout: TimeAmount = .seconds(30)) {
        servers = Self.split(server)
        self.server = servers.joined(separator: ",")
        preferred = Preferred()
        self.token = token
        self.http = HTTPClients.client(caPEM: caPEM, identity: identity, streaming: false)
        self.streamingHTTP = HTTPClients.client(caPEM: caPEM, identity: identity, streaming: true)
        self.timeout = timeout
    }

    // MARK: Objects

    public func list(_ kind: ResourceKind, query: [String: String] = [:]) async throws(APIError) -> ObjectList {
        try await decode(ObjectList.self, from: call(.GET, "/v1/\(kind.plural)", query: query))
    }

    public func get(_ kind: ResourceKind, _ name: String) async throws(APIError) -> AnyResource {
        try await decode(AnyResource.self, from: call(.GET, "/v1/\(kind.plural)/\(name)"))
    }

    /// Creates; the answer carries `uid`, `creationTimestamp` and `revision`.
    public func create(_ object: AnyResource) async throws(APIError) -> AnyResource {
        try await decode(AnyResource.self, from: call(.POST, "/v1/\(plural(of: object))", body: encode(object)))
    }

    /// Replaces; `metadata.revision`, when set, must be the stored one (else 409 Conflict).
    public func update(_ object: AnyResource) async throws(APIError) -> AnyResource {
        try await decode(AnyResource.self, from: call(.PUT, "/v1/\(plural(of: object))/\(object.name)", body: encode(object)))
    }

    /// Writes only the object's status (`PUT …/status`): what agents report. Its spec and
    /// metadata stay as stored; `metadata.revision`, when set, must be the stored one.
    public func updateStatus(_ object: AnyResource) async throws(APIError) -> AnyResource {
        try await decode(AnyResource.self, from: call(.PUT, "/v1/\(plural(of: object))/\(object.name)/status", body: encode(object)))
    }

    // MARK: Tokens

    public func tokens() async throws(APIError) -> [TokenInfo] {
        try await decode([TokenInfo].self, from: call(.GET, "/v1/tokens"))
    }

    /// A new token (admin only); its secret is in the answer and nowhere else.
    public func createToken(role: String, node: String? = nil, description: String? = nil) async throws(APIError) -> TokenCreated {
        var fields = ["role": role]
        if let node { fields["node"] = node }
        if let description { fields["description"] = description }
        let body = ByteBuffer(bytes: (try? JSONEncoder().encode(fields)) ?? Data())
        return try await decode(TokenCreated.self, from: call(.POST, "/v1/tokens", body: body))
    }

    public func revokeToken(id: String) async throws(APIError) {
        _ = try await call(.DELETE, "/v1/tokens/\(id)")
    }

    /// Deletes. Instances on a node are stopped first (within their grace period) unless `force`;
    /// the answer is then the object marked for deletion.
    @discardableResult
    public func delete(_ kind: ResourceKind, _ name: String, revision: UInt64? = nil, force: Bool = false) async throws(APIError) -> AnyResource {
        var query: [String: String] = [:]
        if let revision { query["revision"] = String(revision) }
        if force { query["force"] = "true" }
        return try await decode(AnyResource.self, from: call(.DELETE, "/v1/\(kind.plural)/\(name)", query: query))
    }

    /// The plugins loaded by the server and by every agent.
    public func plugins() async throws(APIError) -> [PluginInfo] {
        try await decode([PluginInfo].self, from: call(.GET, "/v1/plugins"))
    }

    /// The API servers of the cluster and which leads (`GET /v1/servers`).
    public func servers() async throws(APIError) -> [ServerInfo] {
        try await decode([ServerInfo].self, from: call(.GET, "/v1/servers"))
    }

    /// The cluster's address plan (`GET /v1/cluster`).
    public func cluster() async throws(APIError) -> ClusterInfo {
        try await decode(ClusterInfo.self, from: call(.GET, "/v1/cluster"))
    }

    /// Up to `maxBytes` of an instance's output from `offset`, and where to read next.
    /// - Parameter wait: seconds the server may hold the read open until there is output
    ///   (0 to ``LogQuery/maxWaitSeconds``; `logs -f`).
    public func logs(_ name: String, stream: String = "stdout", offset: UInt64 = 0, maxBytes: Int = 1 << 20, wait: Double = 0) async throws(APIError) -> (data: [UInt8], nextOffset: UInt64) {
        var query = ["stream": stream, "offset": String(offset), "maxBytes": String(maxBytes)]
        if wait > 0 { query["wait"] = String(wait) }
        let (buffer, headers) = try await callWithHeaders(.GET, "/v1/instances/\(name)/log", query: query)
        let next = headers.first(name: LogHeaders.nextOffset).flatMap(UInt64.init) ?? offset + UInt64(buffer.readableBytes)
        return (Array(buffer.readableBytesView), next)
    }

    /// A plain GET of a non-JSON path (`/metrics`, `/healthz`).
    public func text(_ path: String) async throws(APIError) -> String {
        String(buffer: try await call(.GET, path))
    }

    // MARK: Watch

    /// Every change to objects of `kind` after `revision`, in order, until the stream ends
    /// (server shutdown, or a ``WatchEvent/EventType/resync``). Throws an ``APIError`` with
    /// status 410 when `revision` is older than the server still holds: relist and watch again.
    public func watch(_ kind: ResourceKind, after revision: UInt64, query: [String: String] = [:]) async throws(APIError) -> WatchStream {
        var query = query
        query["revision"] = String(revision)
        let response = try await send(.GET, "/v1/watch/\(kind.plural)", query: query, body: nil) { request in
            try await streamingHTTP.execute(request, deadline: .distantFuture)
        }
        guard response.status == .ok else {
            let body = (try? await response.body.collect(upTo: 1 << 20)) ?? ByteBuffer()
            throw errorFrom(status: response.status, body: body)
        }
        return WatchStream(body: response.body)
    }

    // MARK: Plumbing

    private func plural(of object: AnyResource) -> String {
        ResourceKind.kind(object.kind)?.plural ?? object.kind.lowercased() + "s"
    }

    private func encode(_ object: AnyResource) throws(APIError) -> ByteBuffer {
        do {
            return ByteBuffer(bytes: try SortedJSON.encode(object))
        } catch {
            throw APIError(status: 0, body: ErrorBody(code: 0, reason: "BadRequest", message: "cannot encode \(object.kind) \"\(object.name)\": \(error)"))
        }
    }

    /// The decoder for what the server sends: objects it stored and validated. Unknown keys are
    /// tolerated, as client-go does, so a client keeps working against a newer server that
    /// added a field (requests, not answers, are where typos are refused); and the check,
    /// a second pass over every object's keys, is not paid on every watch event.
    /// ``FastJSONDecoder``: half of a watching client's CPU was Foundation's decoder.
    static func responseDecoder() -> FastJSONDecoder {
        var decoder = FastJSONDecoder()
        decoder.userInfo[.capstanTrustedDocument] = true
        return decoder
    }

    private func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws(APIError) -> T {
        do {
            return try buffer.withUnsafeReadableBytes { try APIClient.responseDecoder().decode(T.self, fromBytes: $0) }
        } catch {
            throw APIError(status: 0, body: ErrorBody(code: 0, reason: "BadResponse", message: "the server's answer is not a \(T.self): \(error)"))
        }
    }

    /// `a,b/,c` as URLs without trailing slashes.
    public static func split(_ server: String) -> [String] {
        let parts = server.split(separator: ",").map { part -> String in
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            return trimmed.hasSuffix("/") ? String(trimmed.dropLast()) : trimmed
        }.filter { !$0.isEmpty }
        return parts.isEmpty ? [server] : parts
    }

    /// Which server answered last.
    final class Preferred: Sendable {
        let index = Mutex(0)
    }

    /// Sends to the preferred server, then to the others (see ``servers``).
    private func send(_ method: HTTPMethod, _ path: String, query: [String: String], body: ByteBuffer?,
                      _ execute: (HTTPClientRequest) async throws -> HTTPClientResponse) async throws(APIError) -> HTTPClientResponse {
        let first = preferred.index.withLock { $0 } % servers.count
        var lastError: (any Error)?
        for offset in 0..<servers.count {
            let index = (first + offset) % servers.count
            do {
                let response = try await execute(makeRequest(method, path, query: query, body: body, server: servers[index]))
                // 503: that server cannot serve now (starting, or cut off from its store) and did
                // nothing; another may.
                if response.status == .serviceUnavailable && offset < servers.count - 1 {
                    lastError = HTTPClientError.remoteConnectionClosed
                    continue
                }
                if index != first { preferred.index.withLock { $0 = index } }
                return response
            } catch {
                lastError = error
                guard Self.neverConnected(error) || method == .GET, servers.count > 1 else { throw .unreachable(servers[index], error) }
            }
        }
        throw .unreachable(server, lastError ?? HTTPClientError.connectTimeout)
    }

    /// True for failures before a connection existed (refused, unreachable, connect timeout):
    /// the request was never sent, so sending it elsewhere cannot apply it twice.
    public static func neverConnected(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        if let error = error as? ChannelError, case .connectTimeout = error { return true }
        if let error = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL].contains(error.errnoCode) { return true }
        let text = "\(error)"
        return text.contains("connectTimeout") || text.contains("Connection refused") || text.contains("connection refused")
    }

    private func makeRequest(_ method: HTTPMethod, _ path: String, query: [String: String], body: ByteBuffer?, server: String) -> HTTPClientRequest {
        var url = server + path
        if !query.isEmpty {
            var components = URLComponents()
            components.queryItems = query.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
            url += "?" + (components.percentEncodedQuery ?? "")
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(body)
        }
        return request
    }

    private func call(_ method: HTTPMethod, _ path: String, query: [String: String] = [:], body: ByteBuffer? = nil) async throws(APIError) -> ByteBuffer {
        try await callWithHeaders(method, path, query: query, body: body).body
    }

    private func callWithHeaders(_ method: HTTPMethod, _ path: String, query: [String: String] = [:], body: ByteBuffer? = nil) async throws(APIError) -> (body: ByteBuffer, headers: HTTPHeaders) {
        let response = try await send(method, path, query: query, body: body) { request in try await http.execute(request, timeout: timeout) }
        let collected: ByteBuffer
        do {
            collected = try await response.body.collect(upTo: 256 << 20)
        } catch {
            throw .unreachable(server, error)
        }
        guard (200..<300).contains(Int(response.status.code)) else {
            throw errorFrom(status: response.status, body: collected)
        }
        return (collected, response.headers)
    }

    private func errorFrom(status: HTTPResponseStatus, body: ByteBuffer) -> APIError {
        if let decoded = try? JSONDecoder().decode(ErrorBody.self, from: Data(body.readableBytesView)) {
            return APIError(status: Int(status.code), body: decoded)
        }
        return APIError(status: Int(status.code), body: ErrorBody(code: Int(status.code), reason: status.reasonPhrase, message: "\(status.code) \(status.reasonPhrase): \(String(buffer: body))"))
    }
}
