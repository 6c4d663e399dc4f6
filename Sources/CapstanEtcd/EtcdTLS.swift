import Foundation
import NIOSSL

/// How Capstan reaches etcd members that serve TLS (etcd's `--cert-file`, `--key-file`) and ask
/// clients for a certificate (`--client-cert-auth`, `--trusted-ca-file`): the CA that signed
/// the members' certificates, and the client certificate and key Capstan shows them — the
/// same three files as kube-apiserver's `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`.
///
/// Loading checks everything a connection would need, so a bad file is named at start, not at
/// the first request: each file exists and holds PEM of the right kind, and the key is not
/// readable by other users (`chmod 600`).
public struct EtcdTLS: Sendable, Hashable {
    public let caPEM: String
    public let certificatePEM: String?
    public let keyPEM: String?
    /// Made once from the PEM above (which makes it without error: ``load(caFile:certificateFile:keyFile:)`` checked).
    let configuration: TLSConfiguration

    /// - Parameter names: what errors call the CA, the certificate and the key (the files they came from).
    public init(caPEM: String, certificatePEM: String? = nil, keyPEM: String? = nil,
                names: (ca: String, certificate: String, key: String) = ("the etcd CA", "etcd's client certificate", "etcd's client key")) throws(EtcdError) {
        guard (certificatePEM == nil) == (keyPEM == nil) else {
            throw .badArgument("etcd's client certificate and its key go together: give both or neither")
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        do {
            let roots = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
            guard !roots.isEmpty else { throw EtcdError.badArgument("no certificate in it") }
            configuration.trustRoots = .certificates(roots)
        } catch {
            throw .badArgument("\(names.ca) is not a PEM certificate: \(error)")
        }
        if let certificatePEM, let keyPEM {
            do {
                let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
                guard !chain.isEmpty else { throw EtcdError.badArgument("no certificate in it") }
                configuration.certificateChain = chain.map { .certificate($0) }
            } catch {
                throw .badArgument("\(names.certificate) is not a PEM certificate: \(error)")
            }
            do {
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
            } catch {
                throw .badArgument("\(names.key) is not an unencrypted PEM private key: \(error)")
            }
        }
        self.caPEM = caPEM
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
        self.configuration = configuration
    }

    /// Reads the three files; each error names the file and what to do.
    /// - Parameters:
    ///   - caFile: the CA that signed the members' certificates (PEM).
    ///   - certificateFile: the client certificate (PEM), for members started with `--client-cert-auth`.
    ///   - keyFile: its private key (PEM), readable by its owner only.
    public static func load(caFile: String, certificateFile: String?, keyFile: String?) throws(EtcdError) -> EtcdTLS {
        guard (certificateFile == nil) == (keyFile == nil) else {
            throw .badArgument("--etcd-certfile and --etcd-keyfile go together: give both, or neither if etcd does not ask for client certificates")
        }
        let ca = try read(caFile, "--etcd-cafile")
        var certificate: String?, key: String?
        if let certificateFile, let keyFile {
            certificate = try read(certificateFile, "--etcd-certfile")
            var info = stat()
            if stat(keyFile, &info) == 0, info.st_mode & 0o077 != 0 {
                throw .badArgument("--etcd-keyfile \(keyFile): other users can read this private key; chmod 600 \(keyFile)")
            }
            key = try read(keyFile, "--etcd-keyfile")
        }
        return try EtcdTLS(caPEM: ca, certificatePEM: certificate, keyPEM: key,
                           names: ("--etcd-cafile \(caFile)", "--etcd-certfile \(certificateFile ?? "")", "--etcd-keyfile \(keyFile ?? "")"))
    }

    private static func read(_ path: String, _ flag: String) throws(EtcdError) -> String {
        guard FileManager.default.fileExists(atPath: path) else { throw .badArgument("\(flag) \(path): no such file") }
        var info = stat()
        guard stat(path, &info) == 0, info.st_size <= 1 << 20 else { throw .badArgument("\(flag) \(path): not a PEM file of at most 1 MiB") }
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .badArgument("\(flag) \(path): cannot be read (\(error.localizedDescription))")
        }
    }

    public static func == (a: EtcdTLS, b: EtcdTLS) -> Bool {
        a.caPEM == b.caPEM && a.certificatePEM == b.certificatePEM && a.keyPEM == b.keyPEM
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(caPEM)
        hasher.combine(certificatePEM)
        hasher.combine(keyPEM)
    }
}
