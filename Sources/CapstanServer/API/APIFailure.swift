import CapstanAPI
import CapstanCore
import CapstanStore
import Hummingbird

/// An error answer: an HTTP status and the ``ErrorBody`` that explains it.
struct APIFailure: Error {
    var status: HTTPResponse.Status
    var body: ErrorBody

    init(_ status: HTTPResponse.Status, _ reason: String, _ message: String, problems: [ValidationProblem] = []) {
        self.status = status
        self.body = ErrorBody(code: status.code, reason: reason, message: message, problems: problems)
    }

    static func badRequest(_ message: String) -> APIFailure { APIFailure(.badRequest, "BadRequest", message) }
    static func notFound(_ message: String) -> APIFailure { APIFailure(.notFound, "NotFound", message) }
    static func tooLarge(_ limit: Int) -> APIFailure {
        APIFailure(.contentTooLarge, "PayloadTooLarge", "the request body is larger than \(limit) bytes; send a smaller object")
    }

    /// The answer for a store error: 422 with every field, 409, 404 or 500.
    init(_ error: StoreError) {
        switch error {
        case .invalid(let validation):
            self.init(.unprocessableContent, "Invalid", "\(validation.subject) is invalid", problems: validation.problems)
        case .alreadyExists:
            self.init(.conflict, "AlreadyExists", error.description)
        case .notFound:
            self.init(.notFound, "NotFound", error.description)
        case .conflict:
            self.init(.conflict, "Conflict", error.description)
        case .storage, .rolledBack:
            self.init(.internalServerError, "Internal", error.description)
        case .unavailable:
            self.init(.serviceUnavailable, "Unavailable", error.description)
        }
    }
}
