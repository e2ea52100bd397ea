import ArgumentParser
import ControlAPI
import Foundation

extension Twinbrain {
    struct Search: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what the box would recall for a question, and why (the retrieval test).",
            discussion: """
                Lists the passages the question's words find (BM25), each with the share of the question it holds \
                against the floor, its score against the best one's, and what became of it: recalled (put before \
                the main brain), below the floor, below the relative floor, beyond the limit, or a near miss (read \
                only to say the documents do not answer). Then the lines an answer would cite and what the token \
                memory would add at the answer's first token. Nothing is generated.

                Example: twinbrain search "Who approves flights?"
                """)

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Passages recall may put before the main brain (default: the daemon's knowledge_passages).") var limit: Int?
        @Flag(help: "Print the daemon's JSON reply.") var json = false
        @Argument(help: "The question.") var question: [String]

        func validate() throws {
            if question.joined().trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("search needs a question") }
        }

        func run() throws {
            try runReportingErrors {
                // Everything but unreserved characters escaped: `&`, `=` and `+` in a question stay its own.
                let unreserved = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
                let q = question.joined(separator: " ").addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
                let path = "/v1/search?q=\(q)" + (limit.map { "&limit=\($0)" } ?? "")
                let reply = try connection.client.send("GET", path)
                let result = try decodeOK(SearchResponse.self, reply)
                if json { printRaw(reply.body); return }
                Self.describe(result)
            }
        }

        static func describe(_ r: SearchResponse) {
            print("words searched: \(r.words.joined(separator: " "))")
            print(String(format: "floors: a passage must hold %.0f%% of the question and score %.0f%% of the best one; at most %d are recalled",
                         100 * r.floor, 100 * r.relativeFloor, r.limit))
            if !r.candidates.isEmpty {
                printTable(["", "share", "score", "rel.", "verdict", "passage"], r.candidates.map { c in
                    var place = Docs.printable(c.path)
                    if let page = c.page { place += " p. \(page)" }
                    if let a = c.lineStart, let b = c.lineEnd { place += a == b ? ":\(a)" : ":\(a)–\(b)" }
                    if let heading = c.headings.last { place += " (\(heading))" }
                    return [c.verdict == "recalled" ? "*" : "", String(format: "%.2f", c.share), String(format: "%.3g", c.score),
                            c.relativeScore.map { String(format: "%.2f", $0) } ?? "-", c.verdict, place]
                })
            }
            print(r.decision)
            for e in r.evidence {
                print("  \(e.citation):")
                for line in e.text.split(separator: "\n") { print("    \(line)") }
            }
            if let m = r.memory {
                let documents = m.documents.prefix(3).map { String(format: "%@ %.0f%%", Docs.printable($0.path), 100 * $0.votes) }
                let tokens = m.tokens.map { "\"" + $0.replacingOccurrences(of: "\n", with: "\\n") + "\"" }
                print(String(format: "token memory (%d entries): weight %.2f at the first token%@; nearest entries from %@; they vote for %@",
                             m.entries, m.weight, m.weight == 0 ? " (silent: the main brain speaks alone)" : "",
                             documents.joined(separator: ", "), tokens.joined(separator: " ")))
            }
        }
    }
}
