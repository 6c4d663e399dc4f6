import CapstanCore
import Foundation
import Hummingbird
import Yams

/// Turns a request body into an object: JSON, or YAML when the content type says so. Every
/// failure is a 400 that names the field, or a 413 past the size limit.
enum RequestDecoding {
    /// The largest body the API reads.
    static let maxBodyBytes = 4 << 20

    static func object(from request: Request) async throws -> AnyResource {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: maxBodyBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIFailure(.contentTooLarge, "PayloadTooLarge", "the request body is larger than \(maxBodyBytes) bytes")
        }
        let data = Data(buffer.readableBytesView)
        if data.isEmpty { throw APIFailure.badRequest("the request has no body; send the object as JSON or YAML") }
        let isYAML = (request.headers[.contentType] ?? "").contains("yaml")
        do {
            if isYAML {
                guard let text = String(data: data, encoding: .utf8) else { throw APIFailure.badRequest("the YAML body is not UTF-8") }
                return try YAMLDecoder().decode(AnyResource.self, from: text)
            }
            return try JSONDecoder().decode(AnyResource.self, from: data)
        } catch let error as DecodingError {
            throw APIFailure.badRequest("malformed \(isYAML ? "YAML" : "JSON") object: \(describe(error))")
        } catch let error as APIFailure {
            throw error
        } catch {
            throw APIFailure.badRequest("malformed \(isYAML ? "YAML" : "JSON") object: \(error)")
        }
    }

    /// A decoding error as `path: what`, the path dotted like a validation problem's.
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])): is required"
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)): expected \(type); \(context.debugDescription)"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)): expected \(type), found null"
        case .dataCorrupted(let context):
            let underlying = (context.underlyingError as NSError?).map { " (\($0.localizedDescription))" } ?? ""
            return "\(context.codingPath.isEmpty ? "document" : path(context.codingPath)): \(context.debugDescription)\(underlying)"
        @unknown default:
            return "\(error)"
        }
    }
}
