import ArgumentParser
import CapstanAPI
import Foundation

/// `capstan token create|list|revoke`: API tokens (admin only).
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create, list and revoke API tokens (needs an admin token).",
        subcommands: [TokenCreateCommand.self, TokenListCommand.self, TokenRevokeCommand.self])
}

struct TokenCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a token and print it (it is shown this once; the server keeps only its hash).")
    @OptionGroup var client: ClientOptions
    @Option(help: "admin (everything), viewer (read only) or node (one node's agent).") var role: String
    @Option(help: "The node a node token acts as.") var node: String?
    @Option(help: "What the token is for.") var description: String?

    func run() async throws {
        do {
            let created = try await client.client.createToken(role: role, node: node, description: description)
            print(created.token)
        } catch {
            throw CLIExit.fail(error)
        }
    }
}

struct TokenListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List tokens (never their secrets).")
    @OptionGroup var client: ClientOptions

    func run() async throws {
        do {
            let tokens = try await client.client.tokens()
            var rows = [["ID", "ROLE", "NODE", "CREATED", "DESCRIPTION"]]
            for token in tokens { rows.append([token.id, token.role, token.node ?? "-", token.created.description, token.description]) }
            let widths = (0..<5).map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                print(row.enumerated().map { $0.offset == 4 ? $0.element : $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            }
        } catch {
            throw CLIExit.fail(error)
        }
    }
}

struct TokenRevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a token at once, by its id.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The token's id (the part before the dot).") var id: String

    func run() async throws {
        do {
            try await client.client.revokeToken(id: id)
            print("token \(id) revoked")
        } catch {
            throw CLIExit.fail(error)
        }
    }
}
