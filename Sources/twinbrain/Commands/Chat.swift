import ArgumentParser
import ControlAPI
import Foundation

/// Set by SIGINT while an answer streams.
nonisolated(unsafe) private var interrupted: sig_atomic_t = 0

extension Twinbrain {
    struct Chat: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A conversation: type questions, get streamed answers that remember the conversation.",
            discussion: "Ctrl-C stops the answer being written, not the session. Ctrl-D or /exit ends it; /reset forgets the conversation.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var generation: GenerationFlags

        func run() throws {
            try runReportingErrors {
                let client = connection.client
                // Fail early and clearly if the daemon is not there; wait while it loads the model.
                for attempt in 0... {
                    let reply = try client.send("GET", "/v1/health")
                    if reply.status == 200 || attempt == 60 { _ = try decodeOK(HealthResponse.self, reply); break }
                    usleep(250_000)
                }
                signal(SIGINT) { _ in interrupted = 1 }
                var history: [ChatMessageBody] = []
                if let system = generation.system { history.append(.init(role: "system", content: system)) }
                let interactive = isatty(0) != 0
                while true {
                    if interactive { FileHandle.standardOutput.write(Data("> ".utf8)) }
                    guard let line = readLine() else { break }
                    let text = line.trimmingCharacters(in: .whitespaces)
                    if text.isEmpty { continue }
                    if text == "/exit" || text == "/quit" { break }
                    if text == "/reset" {
                        history.removeAll { $0.role != "system" }
                        print("(conversation forgotten)")
                        continue
                    }
                    history.append(.init(role: "user", content: text))
                    interrupted = 0
                    let answer = try streamAnswer(client, messages: history, generation: generation) { interrupted != 0 }
                    if !generation.noSources { printKnowledge(answer) }
                    if interrupted != 0 { print("(stopped)") }
                    history.append(.init(role: "assistant", content: answer.text))
                }
            }
        }
    }
}
