import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// The cluster's certificate authority (P-256, ten years), kept in `<data-dir>/pki/`: it signs
/// the server's certificate (server and client auth: the server shows it to clients and to the
/// agents it calls) and each joined node's. Keys are written 0600.
public struct ClusterCA: Sendable {
    public let certificate: Certificate
    /// The CA's key, as PEM (Crypto's key type is not Sendable).
    let keyPEM: String
    var key: P256.Signing.PrivateKey { get throws { try P256.Signing.PrivateKey(pemRepresentation: keyPEM) } }

    /// The CA's certificate as PEM, for clients to trust (`GET /v1/ca`, the CLI config).
    public var certificatePEM: String { (try? certificate.serializeAsPEM().pemString) ?? "" }

    /// The common name of the server's certificate.
    public static let serverCommonName = "capstan-server"

    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo, the pin an agent joins with (the shape
    /// of kubeadm's `--discovery-token-ca-cert-hash`).
    public var hash: String { Self.hash(of: certificate) }

    public static func hash(of certificate: Certificate) -> String {
        "sha256:" + SHA256.hash(data: Array(certificate.publicKey.subjectPublicKeyInfoBytes)).map { String(format: "%02x", $0) }.joined()
    }

    /// Loads the CA of `directory`, creating it on first use.
    public static func loadOrCreate(in directory: String) throws -> ClusterCA {
        let certificatePath = directory + "/ca.crt", keyPath = directory + "/ca.key"
        if let certificatePEM = try? String(contentsOfFile: certificatePath, encoding: .utf8),
           let keyPEM = try? String(contentsOfFile: keyPath, encoding: .utf8) {
            _ = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
            return ClusterCA(certificate: try Certificate(pemEncoded: certificatePEM), keyPEM: keyPEM)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("capstan cluster CA") }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now - 300, notValidAfter: now + 10 * 365 * 86_400,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(key))
        try writeSecret(key.pemRepresentation, to: keyPath)
        try writePublic(try certificate.serializeAsPEM().pemString, to: certificatePath)
        return ClusterCA(certificate: certificate, keyPEM: key.pemRepresentation)
    }

    /// A certificate for `publicKey`, valid for a year, for server and client authentication.
    /// - Parameters:
    ///   - commonName: `capstan-server`, or `node:<name>` for an agent.
    ///   - hosts: DNS names and IP addresses it serves under.
    public func issue(commonName: String, hosts: [String], publicKey: P256.Signing.PublicKey) throws -> Certificate {
        let now = Date()
        var names: [GeneralName] = []
        for host in Set(hosts).sorted() {
            if let bytes = Self.ipBytes(host) {
                names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
            } else if !host.isEmpty {
                names.append(.dnsName(host))
            }
        }
        let subjectNames = names
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(publicKey),
            notValidBefore: now - 300, notValidAfter: now + 365 * 86_400,
            issuer: certificate.subject, subject: try DistinguishedName { CommonName(commonName) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(subjectNames)
            },
            issuerPrivateKey: .init(try key))
    }

    /// The server's key and certificate in `directory` (`server.key`, `server.crt`), issued
    /// anew at each start for `hosts`.
    public func serverIdentity(in directory: String, hosts: [String]) throws -> TLSIdentity {
        let keyPath = directory + "/server.key"
        let key: P256.Signing.PrivateKey
        if let pem = try? String(contentsOfFile: keyPath, encoding: .utf8) {
            key = try P256.Signing.PrivateKey(pemRepresentation: pem)
        } else {
            key = P256.Signing.PrivateKey()
            try Self.writeSecret(key.pemRepresentation, to: keyPath)
        }
        let certificate = try issue(commonName: Self.serverCommonName, hosts: hosts, publicKey: key.publicKey)
        try Self.writePublic(try certificate.serializeAsPEM().pemString, to: directory + "/server.crt")
        return TLSIdentity(certificatePEM: try certificate.serializeAsPEM().pemString, keyPEM: key.pemRepresentation, caPEM: certificatePEM)
    }

    /// The four or sixteen bytes of an IPv4 or IPv6 address; nil for a name.
    static func ipBytes(_ host: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if inet_pton(AF_INET6, bare, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    static func writeSecret(_ text: String, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        chmod(path, 0o600)
    }

    static func writePublic(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }
}

/// A certificate, its key and the CA that signed it, as PEM: what a TLS endpoint serves with.
public struct TLSIdentity: Sendable, Codable, Hashable {
    public var certificatePEM: String
    public var keyPEM: String
    public var caPEM: String

    public init(certificatePEM: String, keyPEM: String, caPEM: String) {
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
        self.caPEM = caPEM
    }

    /// How a server treats client certificates.
    public enum ClientCertificates: Sendable {
        /// Asks for none (plain TLS).
        case ignored
        /// Asks for one and checks it against the CA when given; clients without one (the CLI,
        /// with its bearer token) are let in too. Agents present theirs: mutual TLS.
        case optional
        /// Lets in only clients holding a certificate of the CA.
        case required
    }

    /// Serving with this identity.
    public func serverConfiguration(clientCertificates: ClientCertificates = .ignored) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)))
        configuration.minimumTLSVersion = .tlsv12
        switch clientCertificates {
        case .ignored: break
        case .optional:
            configuration.certificateVerification = .optionalVerification
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        case .required:
            configuration.certificateVerification = .noHostnameVerification
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        }
        return configuration
    }


    /// True when `chain`'s leaf is the cluster server's own certificate: signed by this CA,
    /// named `capstan-server`, and valid now. An agent lets in only that peer, so one joined node
    /// cannot read another node's logs with its own certificate.
    public static func isServer(_ chain: [NIOSSLCertificate], caPEM: String) -> Bool {
        guard let leaf = chain.first, let der = try? leaf.toDERBytes(), let certificate = try? Certificate(derEncoded: der),
              let ca = try? Certificate(pemEncoded: caPEM), let name = try? DistinguishedName(builder: { CommonName(ClusterCA.serverCommonName) }) else { return false }
        let now = Date()
        return certificate.issuer == ca.subject && ca.publicKey.isValidSignature(certificate.signature, for: certificate)
            && certificate.subject == name && certificate.notValidBefore <= now && now <= certificate.notValidAfter
    }

    /// Calling others with this identity as client certificate, trusting only the CA.
    public func clientConfiguration() throws -> TLSConfiguration {
        var configuration = try TLSTrust.clientConfiguration(caPEM: caPEM)
        configuration.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { .certificate($0) }
        configuration.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        return configuration
    }
}

/// Client-side trust: only the cluster's CA.
public enum TLSTrust {
    public static func clientConfiguration(caPEM: String) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        return configuration
    }
}
