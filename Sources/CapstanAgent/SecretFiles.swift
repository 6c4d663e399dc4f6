import CapstanAPI
import CapstanCore
import CapstanSDK
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Puts the secrets an instance uses where it can read them and nowhere else: files on a tmpfs
/// (never on disk), `<root>/<instance>/<secret>/<key>`, 0400 in 0500 folders owned by the
/// instance's user, and the environment variables its template asks for. Removed when the
/// instance stops.
struct SecretFiles: Sendable {
    /// A tmpfs: memory only.
    static let defaultRoot = "/dev/shm/capstan-secrets"
    let root: String
    let api: APIClient

    init(api: APIClient, root: String = SecretFiles.defaultRoot) {
        self.api = api
        self.root = root
    }

    struct Materialized: Sendable {
        var mounts: [RuntimeMount] = []
        var environment: [String: String] = [:]
    }

    /// Fetches each secret (the node may read those its instances use) and writes it out.
    /// - Parameter inContainer: true for runtimes that mount (runc); false gives host processes
    ///   each folder's path in `CAPSTAN_SECRET_<NAME>`.
    func materialize(_ mounts: [SecretMount], for instance: String, context: SecurityContext?, inContainer: Bool) async throws -> Materialized {
        var result = Materialized()
        guard !mounts.isEmpty else { return result }
        try Self.requireTmpfs(at: (root as NSString).deletingLastPathComponent)
        let folder = root + "/" + instance
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        chmod(root, 0o711)
        let owner = uid_t(clamping: context?.runAsUser ?? Int(getuid()))
        let group = gid_t(clamping: context?.runAsGroup ?? context?.runAsUser ?? Int(getgid()))
        for mount in mounts {
            let secret: Secret
            do {
                guard case .secret(let fetched) = try await api.get(.kind("Secret")!, mount.secret) else {
                    throw PluginError(.internal, "secret \"\(mount.secret)\" came back as another kind")
                }
                secret = fetched
            } catch let error as APIError {
                throw PluginError(error.status == 404 ? .notFound : .failedPrecondition, "secret \"\(mount.secret)\": \(error.body.message)")
            }
            for (variable, key) in mount.env {
                guard let bytes = secret.spec.data[key] else {
                    throw PluginError(.notFound, "secret \"\(mount.secret)\" has no key \"\(key)\" (for \(variable)); it has \(secret.spec.data.keys.sorted().joined(separator: ", "))")
                }
                guard let text = String(validating: bytes, as: UTF8.self), !text.contains("\0") else {
                    throw PluginError(.invalidArgument, "secret \"\(mount.secret)\" key \"\(key)\" is not text; mount it as a file instead of \(variable)")
                }
                result.environment[variable] = text
            }
            guard let mountPath = mount.mountPath else { continue }
            let directory = folder + "/" + mount.secret
            try? FileManager.default.removeItem(atPath: directory)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            for (key, bytes) in secret.spec.data {
                let file = directory + "/" + key
                guard FileManager.default.createFile(atPath: file, contents: Data(bytes), attributes: [.posixPermissions: 0o400]) else {
                    throw PluginError(.internal, "cannot write \(file)")
                }
                chown(file, owner, group)
            }
            chown(directory, owner, group)
            chmod(directory, 0o500)
            if inContainer {
                result.mounts.append(RuntimeMount(hostPath: directory, containerPath: mountPath, readOnly: true))
            } else {
                result.environment[Self.variable(mount.secret)] = directory
            }
        }
        return result
    }

    /// Removes what ``materialize`` wrote for the instance.
    func remove(for instance: String) {
        try? FileManager.default.removeItem(atPath: root + "/" + instance)
    }

    static func variable(_ secret: String) -> String {
        "CAPSTAN_SECRET_" + secret.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// Secrets go only to memory: refuse a folder that is not on a tmpfs.
    static func requireTmpfs(at path: String) throws {
        guard filesystemType(of: path) == "tmpfs" else {
            throw PluginError(.failedPrecondition, "\(path) is not a tmpfs: secrets are only written to memory, never to disk")
        }
    }

    /// The type of the file system `path` is on, from the longest mount point above it in
    /// /proc/self/mounts.
    static func filesystemType(of path: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return nil }
        var best: (length: Int, type: String)?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1])
            let covers = point == "/" || path == point || path.hasPrefix(point + "/")
            if covers && point.count >= (best?.length ?? -1) { best = (point.count, String(fields[2])) }
        }
        return best?.type
    }
}
