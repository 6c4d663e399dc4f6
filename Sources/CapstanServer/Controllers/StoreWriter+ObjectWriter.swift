import CapstanAPI
import CapstanCore
import CapstanStore

extension StoreWriter: ObjectWriter {
    public func fetch(kind: String, name: String) async throws -> AnyResource? {
        try await get(kind: kind, name: name)
    }

    public func isConflict(_ error: any Error) -> Bool {
        switch error as? StoreError {
        case .conflict?, .alreadyExists?: true
        default: false
        }
    }
}
