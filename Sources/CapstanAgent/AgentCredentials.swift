import AsyncHTTPClient
import CapstanAPI
import Crypto
import Foundation
import NIOCore
import NIOSSL
import X509

/// What an agent presents and trusts, kept 0600 in `<data-dir>/agent/`: the cluster CA
/// (`ca.crt`), its node token (`node.token`), its key (`node.key`) and certificate (`node.crt`).
///
/// Joining (the shape of kubeadm's): with `--join-token T --ca-hash sha256:…` the agent fetches
/// the server's CA, accepts it only if its public key hashes to the pin, then asks
/// `POST /v1/join` — over TLS verified against that CA — for a node token and a certificate
/// for its own key (which never leaves the node). Later starts use what it saved.
public struct AgentCredentials: Sendable {
    public var token: String
    public var caPEM: String?
    public var identity: TLSIdentity?

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func prepare(server servers: String, nodeName: String, directory: String, token: String?, joinToken: String?, caHash: String?, caFile: String?, hosts: [String]) async throws -> AgentCredentials {
        // Several servers (a cluster) share one CA: the first one that can be reached is asked
        // for it and for the join.
        let candidates = APIClient.split(servers)
        let server = candidates[0]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        chmod(directory, 0o700)
        let caPath = directory + "/ca.crt", tokenPath = directory + "/node.token", keyPath = directory + "/node.key", certificatePath = directory + "/node.crt"

        var caPEM = try caFile.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? (try? String(contentsOfFile: caPath, encoding: .utf8))
        if server.hasPrefix("https://"), caPEM == nil {
            guard let caHash else {
                throw Failure(description: "\(server) serves TLS: give --ca-hash sha256:… (capstan server logs it at start and keeps it in <data-dir>/pki/ca.hash) or --ca-file with the cluster CA")
            }
            let fetched = try await firstReachable(candidates) { try await fetchCA(server: $0) }
            let actual = ClusterCA.hash(of: try Certificate(pemEncoded: fetched))
            guard actual == caHash.lowercased() else {
                throw Failure(description: "the server's CA hashes to \(actual), not --ca-hash \(caHash): refusing to trust it (check the hash, or whether you reach the right server)")
            }
            try TokenFile.write(fetched, to: caPath)
            caPEM = fetched
        }

        var nodeToken = token ?? TokenFile.read(tokenPath)
        if nodeToken == nil, let joinToken {
            let key: P256.Signing.PrivateKey
            if let pem = try? String(contentsOfFile: keyPath, encoding: .utf8), let existing = try? P256.Signing.PrivateKey(pemRepresentation: pem) {
                key = existing
            } else {
                key = P256.Signing.PrivateKey()
                try TokenFile.write(key.pemRepresentation, to: keyPath)
            }
            let request = JoinRequest(node: nodeName, publicKey: key.publicKey.pemRepresentation, hosts: hosts)
            let answer = try await firstReachable(candidates) { [caPEM] in try await join(server: $0, joinToken: joinToken, caPEM: caPEM, request: request) }
            try TokenFile.write(answer.token, to: tokenPath)
            if let certificate = answer.certificate { try TokenFile.write(certificate, to: certificatePath) }
            nodeToken = answer.token
        }
        guard let nodeToken else {
            throw Failure(description: "the agent needs a node token: on the server run `capstan token create --role join` and start the agent with --join-token (and --ca-hash), or `capstan token create --role node --node \(nodeName)` and --token")
        }
        var identity: TLSIdentity?
        if let caPEM, let certificate = try? String(contentsOfFile: certificatePath, encoding: .utf8), let key = try? String(contentsOfFile: keyPath, encoding: .utf8) {
            identity = TLSIdentity(certificatePEM: certificate, keyPEM: key, caPEM: caPEM)
        }
        return AgentCredentials(token: nodeToken, caPEM: caPEM, identity: identity)
    }

    /// `call` on each server in turn while none can be connected to. A request that reached a
    /// server is not sent to another (a join may have been applied).
    static func firstReachable<T>(_ servers: [String], _ call: (String) async throws -> T) async throws -> T {
        var unreachable: [String] = []
        for server in servers {
            do {
                return try await call(server)
            } catch where APIClient.neverConnected(error) && server != servers.last {
                unreachable.append("\(server): \(error)")
            }
        }
        throw Failure(description: "no server answered (\(unreachable.joined(separator: "; ")))")
    }

    /// The CA's PEM from `GET /v1/ca`, over TLS that verifies nothing: it is trusted only once
    /// its hash matches the pin.
    static func fetchCA(server: String) async throws -> String {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        defer { _ = client.shutdown() }
        let response = try await client.execute(HTTPClientRequest(url: server + "/v1/ca"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 64 << 10)
        guard response.status == .ok else { throw Failure(description: "\(server)/v1/ca answered \(response.status.code)") }
        return String(buffer: body)
    }

    static func join(server: String, joinToken: String, caPEM: String?, request: JoinRequest) async throws -> JoinResponse {
        let client = HTTPClients.client(caPEM: caPEM, identity: nil)
        var call = HTTPClientRequest(url: server + "/v1/join")
        call.method = .POST
        call.headers.add(name: "authorization", value: "Bearer \(joinToken)")
        call.headers.add(name: "content-type", value: "application/json")
        call.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(request)))
        let response = try await client.execute(call, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .created else {
            let reason = (try? JSONDecoder().decode(ErrorBody.self, from: Data(body.readableBytesView)))?.message ?? String(buffer: body)
            throw Failure(description: "joining failed (\(response.status.code)): \(reason)")
        }
        return try JSONDecoder().decode(JoinResponse.self, from: Data(body.readableBytesView))
    }
}
