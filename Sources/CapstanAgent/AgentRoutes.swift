import CapstanAPI
import CapstanSDK
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PluginHost

/// The agent's HTTP endpoint: an instance's output (`/v1/instances/<name>/log`, which the API
/// server proxies) and the plugins this node loaded (`/v1/plugins`).
struct AgentRoutes: Sendable {
    let nodeName: String
    let plugins: PluginHost
    let runtimeFor: @Sendable (String) -> (any RuntimePlugin)?

    func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/v1/plugins") { _, _ -> Response in
            let defaults = plugins.registry.defaults
            let list = plugins.registry.entries.map {
                PluginInfo(name: $0.name, kind: "\($0.kind)", library: $0.library, isDefault: defaults[$0.kind] == $0.name, loadedBy: "node/\(nodeName)")
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(list))))
        }
        router.get("/v1/instances/{name}/log") { request, context -> Response in
            let name = context.parameters.get("name") ?? ""
            let query = request.uri.queryParameters
            let stream = LogsRequest.Stream(rawValue: query.get("stream") ?? "stdout") ?? .stdout
            let offset: UInt64
            let maxBytes: Int
            let wait: Double
            do throws(LogQuery.Problem) {
                (offset, maxBytes) = try LogQuery.parse { query.get($0) }
                wait = try LogQuery.wait { query.get($0) }
            } catch {
                return failure(.badRequest, error.message)
            }
            guard let runtime = runtimeFor(name) else { return failure(.notFound, "no runtime on node \(nodeName) knows instance \"\(name)\"") }
            do {
                let request = LogsRequest(id: name, stream: stream, offset: offset, maxBytes: maxBytes)
                // `wait`: held open until there is output (runtimes with RuntimeLogWait).
                let chunk = if wait > 0, let waiting = runtime as? any RuntimeLogWait {
                    try await waiting.waitForLogs(request, seconds: wait)
                } else {
                    try await runtime.logs(request)
                }
                var response = Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: chunk.data)))
                if let field = HTTPField.Name(LogHeaders.nextOffset) { response.headers[field] = String(chunk.nextOffset) }
                return response
            } catch let error as PluginError where error.code == .notFound {
                return failure(.notFound, "instance \"\(name)\" has no output on node \(nodeName): \(error.message)")
            } catch {
                return failure(.internalServerError, "reading the output of \"\(name)\" failed: \(error)")
            }
        }
        return router
    }

    private func failure(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let body = ErrorBody(code: status.code, reason: status == .notFound ? "NotFound" : (status == .badRequest ? "BadRequest" : "Internal"), message: message)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: (try? JSONEncoder().encode(body)) ?? Data())))
    }
}
