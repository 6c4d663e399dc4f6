import CapstanCore
import Foundation
import Yams

/// Reads Capstan manifests: one or more YAML documents separated by `---`, each a resource in
/// manifest shape (`apiVersion`, `kind`, `metadata`, `spec`, `status`).
///
/// Every document is decoded and validated; all problems of all documents are reported together
/// — every unknown key, not only the first — each prefixed with the document's number and the
/// line of the field it is about (`document 2, line 16: spec.replicas: …`).
/// YAML syntax errors give their line and column. A document whose anchors and aliases expand
/// past ``maxExpandedBytes`` is refused before it is decoded (the "billion laughs" attack).
public enum ManifestReader {
    /// The most one document may expand to, counting each use of an alias in full: the API's
    /// body limit, so an expanded document is never larger than a body the API would take.
    public static let maxExpandedBytes = 4 << 20

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
            throw ValidationError(subject: source, problems: [ValidationProblem(path: "", message: "is not valid YAML: \(describe(error))")])
        }
        var number = 0
        while true {
            let root: Yams.Node?
            do {
                root = try parser.nextRoot()
            } catch {
                problems.append(ValidationProblem(path: "", message: "document \(number + 1) is not valid YAML: \(describe(error))"))
                break
            }
            guard let root else { break }
            number += 1
            func prefixed(_ problem: ValidationProblem) -> ValidationProblem {
                let line = Self.line(of: problem.path, in: root) ?? root.mark?.line
                let place = "document \(number), line \(line.map(String.init) ?? "?")"
                return ValidationProblem(path: problem.path.isEmpty ? place : "\(place): \(problem.path)", message: problem.message)
            }
            let unknown = UnknownKeys()
            do {
                let resource = try decode(root, unknownKeys: unknown)
                let found = unknown.problems + resource.validate()
                if found.isEmpty { resources.append(resource) } else { problems += found.map(prefixed) }
            } catch {
                problems += (unknown.problems + [error]).map(prefixed)
            }
        }
        guard problems.isEmpty else { throw ValidationError(subject: source, problems: problems) }
        return resources
    }

    /// Decodes exactly one YAML document into an object, without validating it (the store
    /// does): for the API's YAML bodies.
    /// - Throws: the problem, with its field path or its line and column.
    public static func decodeOne(_ text: String) throws(ValidationProblem) -> AnyResource {
        let root: Yams.Node?
        do {
            let parser = try Parser(yaml: text)
            root = try parser.nextRoot()
            if let extra = try parser.nextRoot() {
                throw ValidationProblem(path: "", message: "line \((extra.mark?.line).map(String.init) ?? "?"): a second document; send one object per request")
            }
        } catch let problem as ValidationProblem {
            throw problem
        } catch {
            throw ValidationProblem(path: "", message: "is not valid YAML: \(describe(error))")
        }
        guard let root else { throw ValidationProblem(path: "", message: "the YAML body holds no document") }
        return try decode(root)
    }

    /// Checks the expanded size, then decodes.
    /// - Parameter unknownKeys: collects every unknown key instead of throwing at the first.
    static func decode(_ root: Yams.Node, unknownKeys: UnknownKeys? = nil) throws(ValidationProblem) -> AnyResource {
        try checkExpansion(root)
        do {
            var userInfo: [CodingUserInfoKey: Any] = [:]
            if let unknownKeys { userInfo[.capstanUnknownKeys] = unknownKeys }
            return try YAMLDecoder().decode(AnyResource.self, from: root, userInfo: userInfo)
        } catch let error as DecodingError {
            var problem = error.problem
            if case .dataCorrupted(let context) = error, let underlying = context.underlyingError {
                problem.message = describe(underlying)
            }
            throw problem
        } catch {
            throw ValidationProblem(path: "", message: describe(error))
        }
    }

    /// The line of the field at `path` (`spec.template.ports[0].hostPort`) in the document, or
    /// nil when the path does not lead there. Keys may hold dots (`capstan.dev/tier`): at each
    /// mapping the longest key that prefixes the rest of the path wins.
    static func line(of path: String, in root: Yams.Node) -> Int? {
        var node = root
        var rest = Substring(path)
        var line: Int?
        while !rest.isEmpty {
            if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]"), let index = Int(rest[rest.index(after: rest.startIndex)..<close]),
                      case .sequence(let sequence) = node, sequence.indices.contains(index) else { break }
                node = sequence[index]
                line = node.mark?.line ?? line
                rest = rest[rest.index(after: close)...]
            } else {
                guard case .mapping(let mapping) = node else { break }
                var best: (key: Yams.Node, value: Yams.Node, length: Int)?
                for (key, value) in mapping {
                    guard let name = key.string, rest.hasPrefix(name) else { continue }
                    let after = rest.dropFirst(name.count)
                    guard after.isEmpty || after.hasPrefix(".") || after.hasPrefix("[") else { continue }
                    if name.count > (best?.length ?? -1) { best = (key, value, name.count) }
                }
                guard let best else { break }
                line = best.key.mark?.line ?? line
                node = best.value
                rest = rest.dropFirst(best.length)
            }
            if rest.hasPrefix(".") { rest = rest.dropFirst() }
        }
        return line
    }

    /// Refuses a document that expands past ``maxExpandedBytes``. Aliases share their anchor's
    /// node, so the walk counts each use; it stops as soon as the budget is spent, so even an
    /// exponential alias bomb costs at most the budget.
    static func checkExpansion(_ root: Yams.Node) throws(ValidationProblem) {
        var budget = maxExpandedBytes
        var stack: [Yams.Node] = [root]
        while let node = stack.popLast() {
            budget -= 8
            switch node {
            case .scalar(let scalar): budget -= scalar.string.utf8.count
            case .mapping(let mapping):
                for (key, value) in mapping { stack.append(key); stack.append(value) }
            case .sequence(let sequence): stack.append(contentsOf: sequence)
            case .alias: break
            }
            if budget < 0 {
                throw ValidationProblem(path: "", message: "expands to more than \(maxExpandedBytes) bytes (YAML anchors and aliases count in full at each use); send a smaller document")
            }
        }
    }

    /// A YAML error as `line L, column C: what`, without the library's type names.
    public static func describe(_ error: any Error) -> String {
        guard let yaml = error as? YamlError else {
            if let decoding = error as? DecodingError { return decoding.problem.description }
            return String(describing: error)
        }
        func at(_ mark: Mark, _ context: YamlError.Context?, _ problem: String) -> String {
            "line \(mark.line), column \(mark.column): \(problem)" + (context.map { " (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? "")
        }
        switch yaml {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _), .composer(let context, let problem, let mark, _):
            return at(mark, context, problem)
        case .duplicatedKeysInMapping(let duplicates, let context):
            return "line \(context.mark.line), column \(context.mark.column): the key \(duplicates.sorted().map { "\"\($0)\"" }.joined(separator: ", ")) appears more than once in one mapping"
        case .reader(let problem, let offset, _, _):
            return "\(problem)\(offset.map { " at byte \($0)" } ?? "")"
        default:
            return yaml.description
        }
    }
}
