import CapstanSupervision
import CapstanSDK
import Foundation

/// Exec through `runc exec`: the command runs inside the container (its namespaces, root and
/// environment); exec probes use it.
extension RuncRuntime: RuntimeExec {
    func exec(_ request: ExecInstanceRequest) async throws -> ExecResult {
        guard let record = try folders.record(request.id) else { throw notFound(request.id) }
        guard folders.isRunning(record) else { throw PluginError(.failedPrecondition, "instance \"\(request.id)\" is not running") }
        guard !request.command.isEmpty else { throw PluginError(.invalidArgument, "command is empty") }
        let runc = try runc()
        do {
            let result = try await ExternalCommand.run(runc.binary, ["--root", runc.stateRoot, "exec", request.id] + request.command, timeout: request.timeout, check: false)
            return ExecResult(exitCode: result.status, output: Array((result.stdout + result.stderr).prefix(64 << 10)))
        } catch let error as PluginError where error.message.contains("did not finish within") {
            return ExecResult(exitCode: 137, output: Array(error.message.utf8), timedOut: true)
        }
    }
}
