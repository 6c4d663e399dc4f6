import CapstanAPI
import HTTPTypes
import Hummingbird
import NIOCore

/// Answers requests no route takes in the API's error format: 405 with `Allow` when the path
/// exists for other methods, else 404 naming what the API serves. Also turns a body past the
/// limit that the server refused before a handler ran into a 413 that closes the connection.
struct UnknownRouteMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound || error.status == .methodNotAllowed {
            let allowed = Self.allowedMethods(for: request.uri.path)
            if !allowed.isEmpty {
                let names = allowed.map(\.rawValue).joined(separator: ", ")
                return failureResponse(APIFailure(.methodNotAllowed, "MethodNotAllowed", "\(request.method.rawValue) is not served on \(request.uri.path); use \(names)"), headers: [.allow: names])
            }
            return failureResponse(APIFailure.notFound("\(request.uri.path): no such path; the API serves /v1/<kind>[/<name>], /v1/watch/<kind>, /v1/instances/<name>/log, /v1/plugins, /healthz, /readyz and /metrics (docs/api.md)"))
        } catch is NIOTooManyBytesError {
            return failureResponse(APIFailure.tooLarge(RequestDecoding.maxBodyBytes))
        }
    }

    /// The methods the API serves on `path`, from the shape of its routes.
    static func allowedMethods(for path: String) -> [HTTPRequest.Method] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        switch parts.count {
        case 1 where ["healthz", "readyz", "metrics"].contains(String(parts[0])): return [.get]
        case 2 where parts[0] == "v1" && parts[1] == "plugins": return [.get]
        case 2 where parts[0] == "v1" && ResourceKind.plural(String(parts[1])) != nil: return [.get, .post]
        case 3 where parts[0] == "v1" && parts[1] == "watch": return [.get]
        case 3 where parts[0] == "v1" && ResourceKind.plural(String(parts[1])) != nil: return [.get, .put, .delete]
        case 4 where parts[0] == "v1" && parts[3] == "log": return [.get]
        default: return []
        }
    }
}
