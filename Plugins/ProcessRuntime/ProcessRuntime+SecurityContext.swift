import CapstanSDK
import Foundation

extension ProcessRuntime {
    /// util-linux's setpriv, which changes ids, capabilities and no-new-privileges, then execs.
    static let setpriv = "/usr/bin/setpriv"

    /// The `setpriv` arguments that put a host process under `context`, or nil to run it as the
    /// agent runs. The group defaults to the user's id (never root's group by accident).
    /// - Throws: ``PluginError/Code/invalidArgument`` for what a host process cannot honour
    ///   (a read-only root), ``PluginError/Code/failedPrecondition`` without setpriv.
    static func launcher(for context: SecurityContext?) throws -> [String]? {
        guard let context else { return nil }
        if context.readOnlyRootFilesystem == true {
            throw PluginError(.invalidArgument, "securityContext.readOnlyRootFilesystem: the process runtime runs on the host's root and cannot make it read-only; use the runc runtime")
        }
        var arguments: [String] = []
        if let user = context.runAsUser {
            arguments += ["--reuid=\(user)", "--regid=\(context.runAsGroup ?? user)", "--clear-groups"]
        } else if let group = context.runAsGroup {
            arguments += ["--regid=\(group)", "--clear-groups"]
        }
        if context.allowPrivilegeEscalation == false { arguments.append("--no-new-privs") }
        if let changes = context.capabilities {
            let dropAll = changes.drop.contains { $0.uppercased() == "ALL" }
            let added = changes.add.compactMap(CapabilityChanges.canonical).map(Self.setprivName)
            let dropped = changes.drop.compactMap(CapabilityChanges.canonical).map(Self.setprivName)
            let bounding = (dropAll ? ["-all"] : dropped.map { "-" + $0 }) + added.map { "+" + $0 }
            if !bounding.isEmpty { arguments.append("--bounding-set=" + bounding.joined(separator: ",")) }
            if !added.isEmpty && context.runAsUser.map({ $0 != 0 }) == true {
                // A non-root user keeps added capabilities across exec only as ambient ones.
                let list = (["-all"] + added.map { "+" + $0 }).joined(separator: ",")
                arguments += ["--inh-caps=" + list, "--ambient-caps=" + list]
            }
        }
        if arguments.isEmpty { return nil }
        guard FileManager.default.isExecutableFile(atPath: setpriv) else {
            throw PluginError(.failedPrecondition, "securityContext needs \(setpriv) (Debian's util-linux) on this node")
        }
        return [setpriv] + arguments + ["--"]
    }

    /// `CAP_NET_ADMIN` as setpriv writes it: `net_admin`.
    static func setprivName(_ capability: String) -> String {
        String(capability.dropFirst("CAP_".count)).lowercased()
    }
}
