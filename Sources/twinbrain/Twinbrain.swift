import ArgumentParser
import ControlAPI
import Foundation

@main
enum Entry {
    /// `twinbrain --socket PATH status` reads as well as `twinbrain status --socket PATH`:
    /// the socket option before the subcommand is moved after it.
    static func main() {
        var args = Array(CommandLine.arguments.dropFirst())
        if let i = args.firstIndex(where: { $0 == "--socket" || $0.hasPrefix("--socket=") }),
           let sub = args.firstIndex(where: { Twinbrain.subcommandNames.contains($0) }), i < sub {
            let takesValue = args[i] == "--socket" && i + 1 < args.count
            let moved = Array(args[i...(takesValue ? i + 1 : i)])
            args.removeSubrange(i...(takesValue ? i + 1 : i))
            var at = args.firstIndex(where: { Twinbrain.subcommandNames.contains($0) })! + 1
            // A command group's own subcommand (`models list`) comes first.
            if args[at - 1] == "models", at < args.count, Twinbrain.Models.subcommandNames.contains(args[at]) { at += 1 }
            args.insert(contentsOf: moved, at: at)
        }
        Twinbrain.main(args)
    }
}

struct Twinbrain: ParsableCommand {
    static let subcommandNames: Set<String> = ["status", "ask", "chat", "models", "drives", "docs", "ingest", "jobs", "forget", "learn", "repair", "search"]

    static let configuration = CommandConfiguration(
        commandName: "twinbrain",
        abstract: "Talk to the twinbrain appliance (twinbraind) over its Unix socket.",
        discussion: """
            The socket is --socket, else $\(ControlSocket.environmentVariable), else \(ControlSocket.systemPath) \
            (or, in a source checkout running `make run`, .cache/run/twinbraind.sock).
            Exit codes: 0 success, 1 error, 3 daemon not running, 4 access denied, 5 the daemon refused the request.
            """,
        version: twinbrainVersion,
        subcommands: [Status.self, Ask.self, Search.self, Chat.self, Models.self, Drives.self, Docs.self, Ingest.self, Jobs.self, Forget.self,
                      Learn.self, Repair.self])
}

/// Options every command shares.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "The daemon's socket.") var socket: String?

    var client: SocketClient { SocketClient(socketPath: resolvedSocket) }

    var resolvedSocket: String {
        if socket != nil || ProcessInfo.processInfo.environment[ControlSocket.environmentVariable] != nil {
            return SocketClient.resolvePath(socket)
        }
        if FileManager.default.fileExists(atPath: ControlSocket.systemPath) { return ControlSocket.systemPath }
        // A checkout's development daemon (`make run`), found from here or from the binary.
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for start in [URL(fileURLWithPath: FileManager.default.currentDirectoryPath), exe] {
            var dir = start
            for _ in 0..<5 {
                let candidate = dir.appendingPathComponent(".cache/run/twinbraind.sock").path
                if FileManager.default.fileExists(atPath: candidate) { return candidate }
                dir.deleteLastPathComponent()
            }
        }
        return ControlSocket.systemPath
    }
}

/// A failure with the exit code the CLI documents.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    let code: Int32

    static func from(_ error: Error) -> CLIError {
        switch error {
        case let e as CLIError: return e
        case let e as ClientError:
            switch e {
            case .daemonNotRunning: return CLIError(description: e.description, code: 3)
            case .permissionDenied: return CLIError(description: e.description, code: 4)
            default: return CLIError(description: e.description, code: 1)
            }
        default: return CLIError(description: "\(error)", code: 1)
        }
    }

    /// An error reply from the daemon.
    static func reply(_ reply: HTTPReply) -> CLIError {
        if let body = try? JSONDecoder().decode(ErrorBody.self, from: reply.body) {
            let code: Int32 = body.error.code == ErrorCode.forbidden.rawValue ? 4 : 5
            var text = body.error.message
            if body.error.code == ErrorCode.forbidden.rawValue {
                text += ". Ask an administrator to add you (`sudo usermod -aG twinbrain $USER`, then log in again)"
            } else if let retry = reply.headers["retry-after"] {
                text += " (retry in \(retry) s)"
            }
            return CLIError(description: text, code: code)
        }
        return CLIError(description: "twinbraind answered HTTP \(reply.status)", code: 5)
    }
}

/// Runs a command body and turns failures into a message on stderr and the right exit code.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch {
        let e = CLIError.from(error)
        FileHandle.standardError.write(Data("twinbrain: \(e.description)\n".utf8))
        throw ExitCode(e.code)
    }
}

func decodeOK<T: Decodable>(_ type: T.Type, _ reply: HTTPReply) throws -> T {
    guard (200..<300).contains(reply.status) else { throw CLIError.reply(reply) }
    do { return try JSONDecoder().decode(T.self, from: reply.body) } catch {
        throw CLIError(description: "could not read the daemon's reply: \(error)", code: 1)
    }
}

func printRaw(_ data: Data) {
    FileHandle.standardOutput.write(data)
    if data.last != 0x0A { FileHandle.standardOutput.write(Data("\n".utf8)) }
}

/// Options for commands that generate.
struct GenerationFlags: ParsableArguments {
    @Option(name: .customLong("max-tokens"), help: "Most tokens in the answer.") var maxTokens: Int?
    @Option(help: "Sampling temperature (0 = always the most likely token).") var temperature: Float?
    @Option(help: "Random seed: the same seed and question give the same answer.") var seed: UInt64?
    @Option(help: "A system message that sets the assistant's behaviour.") var system: String?
    @Flag(name: .customLong("no-knowledge"), help: "Ask the main brain alone: recall nothing from the learned documents.")
    var noKnowledge = false
    @Flag(name: .customLong("no-sources"), help: "Do not print the evidence and the documents the answer drew on.") var noSources = false

    /// nil (the daemon's default: on) unless turned off.
    var knowledge: Bool? { noKnowledge ? false : nil }

    var options: GenerationOptions {
        var o = GenerationOptions()
        o.maxTokens = maxTokens
        o.temperature = temperature
        o.seed = seed
        return o
    }
}
