import CapstanCore
import Foundation
import Yams

/// Reads Capstan manifests: one or more YAML documents separated by `---`, each a resource in
/// manifest shape (`apiVersion`, `kind`, `metadata`, `spec`, `status`).
///
/// Every document is decoded and validated; all problems of all documents are reported together,
/// each prefixed with the document's number and first line (`document 2 (line 14): spec.replicas: …`).
public enum ManifestReader {
    /// Reads a manifest file.
    public static func read(file path: String) throws(ValidationError) -> [AnyResource] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError(subject: path, problems: [ValidationProblem(path: "", message: "cannot be read; check the path")])
        }
        return try parse(String(decoding: data, as: UTF8.self), source: path)
    }

    /// Parses manifest text; `source` names it in errors.
    public static func parse(_ text: String, source: String) throws(ValidationError) -> [AnyResource] {
        var resources: [AnyResource] = []
        var problems: [ValidationProblem] = []
        let parser: Parser
        do {
            parser = try Parser(yaml: text)
        } catch {
            throw ValidationError(subject: source, problems: [ValidationProblem(path: "", message: "is not valid YAML: \(error)")])
        }
        var number = 0
        while true {
            let root: Yams.Node?
            do {
                root = try parser.nextRoot()
            } catch {
                problems.append(ValidationProblem(path: "", message: "document \(number + 1) is not valid YAML: \(error)"))
                break
            }
            guard let root else { break }
            number += 1
            let place = "document \(number) (line \((root.mark?.line).map(String.init) ?? "?"))"
            func prefixed(_ problem: ValidationProblem) -> ValidationProblem {
                ValidationProblem(path: problem.path.isEmpty ? place : "\(place): \(problem.path)", message: problem.message)
            }
            do {
                let resource = try YAMLDecoder().decode(AnyResource.self, from: root)
                var found = resource.validate()
                if case .node(let node) = resource { found += node.status.validate(at: "status") }
                if found.isEmpty { resources.append(resource) } else { problems += found.map(prefixed) }
            } catch let error as DecodingError {
                problems.append(prefixed(error.problem))
            } catch {
                problems.append(prefixed(ValidationProblem(path: "", message: "\(error)")))
            }
        }
        guard problems.isEmpty else { throw ValidationError(subject: source, problems: problems) }
        return resources
    }
}
