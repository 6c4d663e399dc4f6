import AsyncHTTPClient
import CapstanAPI
import CapstanCore
import CapstanSDK
import NIOCore
import NIOPosix

/// Runs one probe check: exec through the runtime, HTTP GET, or TCP connect; each bounded by the
/// probe's timeout.
struct Prober: Sendable {
    /// The address probes reach the instance at when the probe names no host.
    var host: String
    /// Container port → host port, from the network plugin: a probe names the container port.
    var ports: [Int: Int] = [:]

    enum Outcome: Sendable, Equatable {
        case success
        case failure(String)
    }

    func check(_ probe: Probe, instanceID: String, runtime: any RuntimePlugin, runtimeName: String) async -> Outcome {
        if let command = probe.exec {
            guard let exec = runtime as? any RuntimeExec else {
                return .failure("runtime \"\(runtimeName)\" cannot run exec probes; use httpGet or tcpSocket")
            }
            do {
                let result = try await exec.exec(ExecInstanceRequest(id: instanceID, command: command, timeout: probe.timeoutSeconds))
                if result.timedOut { return .failure("exec \(command.joined(separator: " ")) timed out after \(probe.timeoutSeconds)s") }
                if result.exitCode == 0 { return .success }
                let output = String(decoding: result.output.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                return .failure("exec \(command.joined(separator: " ")) exited with \(result.exitCode)\(output.isEmpty ? "" : ": \(output)")")
            } catch {
                return .failure("exec failed: \(error)")
            }
        }
        if let get = probe.httpGet {
            let url = "http://\(get.host ?? host):\(ports[get.port] ?? get.port)\(get.path)"
            do {
                let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .milliseconds(Int64(saturating: min(probe.timeoutSeconds, FieldLimits.maxSeconds) * 1000)))
                _ = try? await response.body.collect(upTo: 1 << 20)
                let code = Int(response.status.code)
                return (200..<400).contains(code) ? .success : .failure("GET \(url) answered \(code)")
            } catch {
                return .failure("GET \(url) failed: \(error)")
            }
        }
        if let socket = probe.tcpSocket {
            let port = ports[socket.port] ?? socket.port
            let target = "\(socket.host ?? host):\(port)"
            do {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connectTimeout(.milliseconds(Int64(saturating: min(probe.timeoutSeconds, FieldLimits.maxSeconds) * 1000)))
                    .connect(host: socket.host ?? host, port: port).get()
                try? await channel.close()
                return .success
            } catch {
                return .failure("TCP connect to \(target) failed: \(error)")
            }
        }
        return .failure("the probe has no action")
    }
}
