import CapstanSupervision
import CapstanSDK
import Foundation

/// The runc command line this runtime uses, against one state folder (`runc --root`).
struct RuncCommands: Sendable {
    let binary: String
    let stateRoot: String
    /// How long a runc call other than `run` may take.
    static let timeout: Double = 30

    /// What `runc state` and `runc list --format json` say about a container.
    struct ContainerState: Decodable, Sendable {
        var id: String
        /// The container's init process, as the host sees it.
        var pid: Int32
        /// `created`, `running`, `paused` or `stopped`.
        var status: String
    }

    /// The arguments of the foreground `runc run` the shim supervises; it forwards signals to
    /// the container and exits with its status (128 + n when signal n killed it).
    func runCommand(id: String, bundle: String) -> [String] {
        [binary, "--root", stateRoot, "run", "--bundle", bundle, id]
    }

    /// The container's state, or nil when runc does not know it.
    func state(_ id: String) async throws -> ContainerState? {
        let result = try await ExternalCommand.run(binary, ["--root", stateRoot, "state", id], timeout: RuncCommands.timeout, check: false)
        guard result.status == 0 else {
            if result.diagnostic.contains("does not exist") { return nil }
            throw result.failure
        }
        return try JSONDecoder().decode(ContainerState.self, from: result.stdout)
    }

    /// Every container runc knows under this state folder.
    func list() async throws -> [ContainerState] {
        let result = try await ExternalCommand.run(binary, ["--root", stateRoot, "list", "--format", "json"], timeout: RuncCommands.timeout)
        // An empty list is printed as `null`.
        return try JSONDecoder().decode([ContainerState]?.self, from: result.stdout) ?? []
    }

    /// Sends `signal` (a number) to the container's init, or with `all` to every process in it.
    func kill(_ id: String, signal: Int32, all: Bool = false) async throws {
        _ = try await ExternalCommand.run(binary, ["--root", stateRoot, "kill"] + (all ? ["--all"] : []) + [id, "\(signal)"], timeout: RuncCommands.timeout)
    }

    /// Deletes the container and its cgroups, killing it first if it still runs; a container
    /// runc does not know is fine.
    func forceDelete(_ id: String) async throws {
        _ = try await ExternalCommand.run(binary, ["--root", stateRoot, "delete", "--force", id], timeout: RuncCommands.timeout)
    }
}
