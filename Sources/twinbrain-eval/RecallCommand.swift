import ArgumentParser
import Evaluation
import Foundation
import LearningBrain

struct RecallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recall",
        abstract: "Show what passage recall finds for questions over a corpus's learned documents, and why.",
        discussion: """
            Cuts and indexes the corpus's learned documents as the daemon does, then for each \\
            question (or each --item of the corpus) prints its content words and every BM25 \\
            candidate with its score, the share of the question it holds (the floor is \\
            \(PassageRelevance.floor)) and whether recall keeps it (*). Items mark their gold document (gold).
            """)

    @OptionGroup var options: ModelOptions
    @Option(help: "The corpus directory (FreshDocs format).") var corpus: String
    @Option(help: "Comma-separated item ids of the corpus to probe (their prompts; plain items as prompts to continue).")
    var items: String?
    @Flag(help: "Recall the questions as plain prompts to continue (as /v1/generate and /v1/completions do).")
    var continuing = false
    @Argument(help: "Questions.") var questions: [String] = []

    func run() throws {
        let corpus = try FreshDocsCorpus.load(corpus)
        var asked: [(text: String, continuing: Bool, gold: String?)] = questions.map { ($0, continuing, nil) }
        for id in items?.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) ?? [] {
            guard let item = corpus.items.first(where: { $0.id == id }) else { throw ValidationError("no item \(id) in \(corpus.name)") }
            asked.append((item.prompt, !item.chat, item.doc))
        }
        guard !asked.isEmpty else { throw ValidationError("give questions or --items") }
        let probe = try RecallProbe(corpus: corpus, tokenizer: try options.loadTokenizer())
        var out: [[String: Any]] = []
        for q in asked {
            let (words, candidates, recalled) = try probe.probe(q.text, continuing: q.continuing)
            if options.json {
                out.append(["question": q.text, "continuing": q.continuing, "gold": q.gold as Any, "words": words,
                            "candidates": candidates.map { ["passage": $0.passage, "header": $0.header, "bm25": $0.bm25,
                                                            "share": $0.share, "recalled": $0.recalled] as [String: Any] },
                            "recalled": recalled])
                continue
            }
            print("── \(q.text)\(q.continuing ? "  (continuing)" : "")")
            print("words: \(words.joined(separator: " "))")
            for c in candidates {
                print((c.recalled ? "*" : " ") + String(format: " %7.2f  %.2f  ", c.bm25, c.share)
                      + c.passage + (c.path == q.gold ? "  (gold)" : "") + (c.header.isEmpty ? "" : " · \(c.header)"))
            }
            print("recalled: " + (recalled.isEmpty ? "nothing" : recalled.joined(separator: ", ")))
        }
        if options.json { printJSON(["probes": out]) }
    }
}
