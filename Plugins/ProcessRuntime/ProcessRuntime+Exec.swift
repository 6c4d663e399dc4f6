import CapstanSDK
import CapstanSupervision
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Exec for host processes: the command runs with the instance's environment and working
/// directory, and in its network namespace and resolv.conf when it has them (SDK 1.4), so an
/// exec probe of `localhost:8080` reaches the instance, not the node.
extension ProcessRuntime: RuntimeExec {
    func exec(_ request: ExecInstanceRequest) async throws -> ExecResult {
        guard let record = try folders.record(request.id) else { throw notFound(request.id) }
        guard status(of: record).state == .running else {
            throw PluginError(.failedPrecondition, "instance \"\(request.id)\" is not running")
        }
        guard !request.command.isEmpty else { throw PluginError(.invalidArgument, "command is empty") }
        var environment = record.env
        if environment["PATH"] == nil { environment["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // Under the same user, groups and privileges as the instance itself.
        process.arguments = (record.launcher ?? []) + request.command
        process.environment = environment
        process.currentDirectoryURL = URL(fileURLWithPath: record.workingDir ?? folders.folder(request.id).path)
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        do {
            if record.networkNamespace != nil || record.resolvConf != nil {
                // Spawned from a thread inside the instance's namespaces; the caller waits for
                // that thread, so the process is never used from two threads at once.
                let handed = HandedOver(process)
                try await NamespaceThread.run(network: record.networkNamespace, resolvConf: record.resolvConf, mounts: record.resolvConf == nil ? [] : record.mounts ?? []) { try handed.value.run() }
            } else {
                try process.run()
            }
        } catch {
            throw PluginError(.internal, "cannot run \(request.command[0]): \(error)")
        }
        let pid = process.processIdentifier
        let timer = DispatchWorkItem { Glibc.kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + max(0.001, request.timeout), execute: timer)
        let data = await withCheckedContinuation { (continuation: CheckedContinuation<Data, Never>) in
            DispatchQueue.global().async {
                let data = output.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: data)
            }
        }
        timer.cancel()
        let killed = process.terminationReason == .uncaughtSignal
        let code: Int32 = killed ? 128 + process.terminationStatus : process.terminationStatus
        return ExecResult(exitCode: code, output: Array(data.prefix(64 << 10)), timedOut: killed && process.terminationStatus == SIGKILL)
    }
}

/// A value handed to exactly one other thread while its owner waits.
private struct HandedOver<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
