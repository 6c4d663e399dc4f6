import CapstanAPI
import CapstanCore
import CapstanJSON
import Foundation
import Hummingbird
import NIOCore
import PluginHost

/// Turns a request body into an object: JSON, or YAML when the content type says so. Every
/// failure is a 400 that names the field (or the line and column), or a 413 past the size limit.
/// JSON with a key twice in one object is refused (decoders would silently keep one of them);
/// YAML is refused before decoding when its aliases expand past the body limit.
enum RequestDecoding {
    /// The largest body the API reads.
    static let maxBodyBytes = 4 << 20

    static func object(from request: Request) async throws -> AnyResource {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIFailure.tooLarge(maxBodyBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIFailure.tooLarge(maxBodyBytes)
        }
        let data = Data(buffer.readableBytesView)
        if data.isEmpty { throw APIFailure.badRequest("the request has no body; send the object as JSON or YAML") }
        // (`utf8.firstRange`: Foundation's `contains` of a string was a tenth of this function.)
        let isYAML = (request.headers[.contentType] ?? "").utf8.firstRange(of: "yaml".utf8) != nil
        if isYAML {
            guard let text = String(data: data, encoding: .utf8) else { throw APIFailure.badRequest("the YAML body is not UTF-8") }
            do {
                return try ManifestReader.decodeOne(text)
            } catch {
                throw APIFailure.badRequest("malformed YAML object: \(error.description)")
            }
        }
        // Most bodies: one parse. The fast path takes no document with a key twice in one
        // object (nor anything else Foundation must judge); only the rest are checked below.
        if let object = FastJSONDecoder().decodeOnFastPath(AnyResource.self, from: data) {
            return object
        }
        if let duplicate = JSONKeyCheck.firstDuplicate(in: data) {
            throw APIFailure.badRequest("malformed JSON object: \(duplicate.path.isEmpty ? "" : "\(duplicate.path): ")the key \"\(duplicate.key)\" appears more than once in one object")
        }
        do {
            // Foundation's values and errors, in half its time (Foundation decides whatever
            // the fast path is unsure of, and every error).
            return try FastJSONDecoder().decode(AnyResource.self, from: data)
        } catch let error as DecodingError {
            // Foundation reports a number that does not fit its field (`replicas: 1.5`) as
            // "not valid JSON" with no path. When the body is valid JSON, read it again with the
            // YAML decoder (JSON is YAML), which names the field.
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
               (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil {
                do {
                    _ = try ManifestReader.decodeOne(String(decoding: data, as: UTF8.self))
                } catch {
                    throw APIFailure.badRequest("malformed JSON object: \(error.description)")
                }
            }
            throw APIFailure.badRequest("malformed JSON object: \(describe(error))")
        } catch {
            throw APIFailure.badRequest("malformed JSON object")
        }
    }

    /// A decoding error as `path: what`, in the words validation uses (no Swift type names).
    static func describe(_ error: DecodingError) -> String {
        if case .dataCorrupted(let context) = error, context.codingPath.isEmpty {
            // Foundation's text for unparsable JSON names the byte; its underlying error adds
            // a position too. Neither names a type.
            let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return "document: \(underlying ?? context.debugDescription)"
        }
        return error.problem.description
    }
}
