import ArgumentParser
import ControlAPI
import Foundation

extension Twinbrain {
    struct Ask: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask one question; the answer streams as it is written.",
            discussion: """
                The learning brain recalls passages of the learned documents that match the question. Under \
                the answer come the evidence (the lines of those documents that support it, cited as \
                path:lines with their headings) and the documents it drew on (--no-sources hides both, \
                --no-knowledge asks the main brain alone). When nothing learned matches, it says so: the \
                answer is then the model's alone.

                Example: twinbrain ask "What does our travel policy say about trains?"
                """)

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var generation: GenerationFlags
        @Flag(help: "Wait for the whole answer and print the daemon's JSON reply.") var json = false
        @Argument(help: "The question.") var question: [String]

        func validate() throws {
            if question.joined().trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("ask needs a question") }
        }

        func run() throws {
            try runReportingErrors {
                var messages: [ChatMessageBody] = []
                if let system = generation.system { messages.append(.init(role: "system", content: system)) }
                messages.append(.init(role: "user", content: question.joined(separator: " ")))
                if json {
                    let body = try JSONEncoder().encode(ChatRequest(messages: messages, stream: false, knowledge: generation.knowledge,
                                                                    options: generation.options))
                    let reply = try connection.client.send("POST", "/v1/chat", body: body)
                    _ = try decodeOK(GenerateResponse.self, reply)
                    printRaw(reply.body)
                    return
                }
                let answer = try streamAnswer(connection.client, messages: messages, generation: generation) { false }
                if !generation.noSources { printKnowledge(answer) }
            }
        }
    }
}

/// What came back for one answer.
struct StreamedAnswer {
    var text = ""
    var sources: [KnowledgeSource] = []
    /// nil when knowledge was off.
    var evidence: [EvidenceLine]?
    /// The reader's decision (`GenerateResponse.reader`).
    var reader: String?
}

/// Streams one chat answer to stdout; returns its text, the documents it drew on and the evidence.
/// `shouldStop` is polled per piece (Ctrl-C in `chat`): stopping closes the connection, which
/// cancels the generation.
func streamAnswer(_ client: SocketClient, messages: [ChatMessageBody], generation: GenerationFlags,
                  shouldStop: () -> Bool) throws -> StreamedAnswer {
    let body = try JSONEncoder().encode(ChatRequest(messages: messages, stream: true, knowledge: generation.knowledge,
                                                    options: generation.options))
    var answer = StreamedAnswer()
    var failure: String?
    var raw = Data()  // the body as received: an error reply is one JSON object, not NDJSON
    let reply = try client.streamLines("POST", "/v1/chat", body: body) { line in
        raw.append(line)
        guard !line.isEmpty, let event = try? JSONDecoder().decode(StreamLine.self, from: line) else { return true }
        if let text = event.text {
            answer.text += text
            print(text, terminator: "")
            fflush(nil)
        }
        if let result = event.result {
            answer.sources = result.sources ?? []
            answer.evidence = result.evidence
            answer.reader = result.reader
        }
        if let error = event.error { failure = error.message }
        return !shouldStop()
    }
    if reply.status != 200 { throw CLIError.reply(HTTPReply(status: reply.status, headers: reply.headers, body: raw)) }
    print()
    if let failure { throw CLIError(description: "the answer was cut short: \(failure)", code: 5) }
    return answer
}

/// Under an answer: the lines that support it, then the documents it drew on. With knowledge
/// on and nothing recalled, one line says the answer is the model's alone.
func printKnowledge(_ answer: StreamedAnswer) {
    if let evidence = answer.evidence {
        if evidence.isEmpty, answer.reader == "silent" {
            print("\n(No evidence: the nearest passages learned were read and none answers the question.)")
        } else if evidence.isEmpty {
            print("\n(No evidence: nothing learned matched the question; this answer is the model's alone.)")
        } else {
            print("\nEvidence:")
            for e in evidence {
                let headings = e.headings.isEmpty ? "" : "  (\(e.headings.joined(separator: " › ")))"
                let quoted = e.quoted.map { "  ← “\(Twinbrain.Docs.printable($0))”" } ?? ""
                print("  \(Twinbrain.Docs.printable(e.citation))\(headings)\(quoted)")
                for line in e.text.split(separator: "\n", omittingEmptySubsequences: false) { print("    │ \(line)") }
            }
        }
    }
    printSources(answer.sources)
}

/// The documents an answer drew on, under it: weight, document id, path and where it came from.
func printSources(_ sources: [KnowledgeSource]) {
    guard !sources.isEmpty else { return }
    print("\nSources:")
    for s in sources {
        let weight = String(format: "%3.0f%%", 100 * s.weight)
        print("  \(weight)  [\(s.documentId)] \(Twinbrain.Docs.printable(s.path)) (\(s.source), version \(s.version))")
    }
}
