import AsyncHTTPClient
import NIOCore
import NIOSSL
import Synchronization

/// One HTTP client per trust (CA and client identity), kept for the process: clients own
/// connection pools and threads, so each API client must not make its own.
public enum HTTPClients {
    private struct Key: Hashable {
        var caPEM: String?
        var identity: TLSIdentity?
        var streaming: Bool
    }

    private static let clients = Mutex<[Key: HTTPClient]>([:])

    public static func client(caPEM: String?, identity: TLSIdentity?, streaming: Bool = false) -> HTTPClient {
        let key = Key(caPEM: caPEM, identity: identity, streaming: streaming)
        return clients.withLock { clients in
            if let client = clients[key] { return client }
            var configuration = HTTPClient.Configuration()
            if let identity, let tls = try? identity.clientConfiguration() {
                configuration.tlsConfiguration = tls
            } else if let caPEM, let tls = try? TLSTrust.clientConfiguration(caPEM: caPEM) {
                configuration.tlsConfiguration = tls
            }
            if streaming {
                configuration.timeout = .init(connect: .seconds(10), read: nil)
                configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1024)
            }
            // A refused connection or a failed TLS handshake is an answer: report it at once
            // instead of retrying until the request's deadline (callers retry where they mean to).
            configuration.connectionPool.retryConnectionEstablishment = false
            // No tracing (Capstan bootstraps no tracer): with the default no-op tracer the client
            // still built every request's span attributes, 4 % of a busy client's CPU.
            configuration.tracing.tracer = nil
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            clients[key] = client
            return client
        }
    }
}
