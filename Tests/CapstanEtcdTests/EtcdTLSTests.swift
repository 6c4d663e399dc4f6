@testable import CapstanEtcd
import CapstanTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// etcd's client TLS: members serving HTTPS and letting in only clients with a certificate of
/// their CA (`--client-cert-auth`), as a production etcd runs.
@Suite(.serialized, .timeLimit(.minutes(2)), .enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"))
struct EtcdTLSTests {
    /// A member serving TLS with a fresh PKI, stopped and removed after `body`.
    func withTLSEtcd(_ body: (EtcdPKI, EtcdServer) async throws -> Void) async throws {
        let pki = try EtcdPKI()
        defer { pki.remove() }
        let etcd = try EtcdServer(pki: pki)
        defer { etcd.stop() }
        try await etcd.ready()
        try await body(pki, etcd)
    }

    @Test func aClientWithTheCAAndACertificateReadsWritesAndWatches() async throws {
        try await withTLSEtcd { _, etcd in
            let tls = try #require(etcd.clientTLS)
            let client = EtcdClient(endpoints: try EtcdClient.endpoints(from: "etcd://127.0.0.1:\(etcd.clientPort)", tls: true), tls: tls)
            #expect(client.endpoints == ["https://127.0.0.1:\(etcd.clientPort)"])
            let revision = try await client.put(bytes("/t/a"), bytes("over TLS"))
            #expect(try await client.range(bytes("/t/a")).kvs.first?.value == bytes("over TLS"))
            // A watch streams over the TLS pool too.
            var events = client.watch(bytes("/t/"), rangeEnd: EtcdClient.prefixEnd(bytes("/t/")), startRevision: revision).makeAsyncIterator()
            let first = try await events.next()
            #expect(first?.first?.kv.value == bytes("over TLS"))
        }
    }

    @Test func membersRefuseAClientWithoutACertificateOrTrustingAnotherCA() async throws {
        try await withTLSEtcd { pki, etcd in
            // No client certificate: etcd ends the handshake.
            let anonymous = EtcdClient(endpoints: [etcd.endpoint], timeout: .seconds(3), tls: try EtcdTLS.load(caFile: pki.caFile, certificateFile: nil, keyFile: nil))
            await #expect(throws: EtcdError.self) { _ = try await anonymous.range(bytes("/t/a")) }
            // Trusting another CA: the member's certificate is refused, nothing is sent.
            let other = try EtcdPKI()
            defer { other.remove() }
            let stranger = EtcdClient(endpoints: [etcd.endpoint], timeout: .seconds(3), tls: try EtcdTLS.load(caFile: other.caFile, certificateFile: other.clientCertificateFile, keyFile: other.clientKeyFile))
            await #expect(throws: EtcdError.self) { _ = try await stranger.put(bytes("/t/b"), bytes("x")) }
            // Plain HTTP to a TLS member gets no answer it can use.
            let plain = EtcdClient(endpoints: ["http://127.0.0.1:\(etcd.clientPort)"], timeout: .seconds(3))
            await #expect(throws: (any Error).self) { _ = try await plain.put(bytes("/t/c"), bytes("x")) }
            // None of them wrote.
            let client = EtcdClient(endpoints: [etcd.endpoint], tls: etcd.clientTLS)
            #expect(try await client.prefix("/t/").kvs.isEmpty)
        }
    }
}

/// Loading the three files names the flag and the file of whatever is wrong.
@Test func etcdTLSFilesAreCheckedWithTheFlagNamed() throws {
    let pki = try EtcdPKI()
    defer { pki.remove() }
    func message(_ ca: String, _ certificate: String?, _ key: String?) -> String {
        do {
            _ = try EtcdTLS.load(caFile: ca, certificateFile: certificate, keyFile: key)
            return ""
        } catch {
            return error.description
        }
    }
    #expect(message(pki.caFile, pki.clientCertificateFile, pki.clientKeyFile) == "")
    #expect(message("/nonexistent/ca.crt", nil, nil).contains("--etcd-cafile /nonexistent/ca.crt: no such file"))
    #expect(message(pki.caFile, pki.clientCertificateFile, nil).contains("--etcd-certfile and --etcd-keyfile go together"))
    // The key given as CA, the CA given as key.
    #expect(message(pki.clientKeyFile, nil, nil).contains("--etcd-cafile \(pki.clientKeyFile) is not a PEM certificate"))
    let notKey = pki.directory.appendingPathComponent("not-a-key.pem").path
    _ = FileManager.default.createFile(atPath: notKey, contents: try Data(contentsOf: URL(fileURLWithPath: pki.caFile)), attributes: [.posixPermissions: 0o600])
    #expect(message(pki.caFile, pki.clientCertificateFile, notKey).contains("--etcd-keyfile \(notKey) is not an unencrypted PEM private key"))
    // A key others can read is refused, with the fix.
    chmod(pki.clientKeyFile, 0o644)
    #expect(message(pki.caFile, pki.clientCertificateFile, pki.clientKeyFile).contains("chmod 600 \(pki.clientKeyFile)"))
    // https:// without TLS asked for, and http:// with it, are named.
    #expect(throws: EtcdError.self) { try EtcdClient.endpoints(from: "https://127.0.0.1:2379") }
    #expect(throws: EtcdError.self) { try EtcdClient.endpoints(from: "http://127.0.0.1:2379", tls: true) }
    #expect(try EtcdClient.endpoints(from: "etcd://a:1,https://b:2", tls: true) == ["https://a:1", "https://b:2"])
}
