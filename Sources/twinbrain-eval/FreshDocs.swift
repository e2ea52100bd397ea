import ArgumentParser
import Evaluation
import Foundation
import MainBrain

struct FreshDocs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "freshdocs",
        abstract: "Run the FreshDocs evaluation on a corpus directory (docs/, heldout.txt, general/, items.jsonl).",
        discussion: """
            Writes the versioned JSON result to --out, a Markdown table beside it (same name, .md) and \
            every system's outcome on every item (same name, .items.jsonl). Tasks a system does not \
            support are reported as such. See docs/evaluation.md.
            """)

    @OptionGroup var options: ModelOptions

    @Option(help: "The corpus directory.") var corpus: String
    @Option(help: "Comma-separated systems (available: \(SystemRegistry.factories.keys.sorted().joined(separator: ", "))).")
    var systems = "base"
    @Option(help: "Where to write the JSON result.") var out: String
    @Option(name: .customLong("max-documents"), help: "Use at most this many documents per set (quick runs).") var maxDocuments: Int?
    @Option(name: .customLong("max-items"), help: "Use at most this many items per kind (quick runs).") var maxItems: Int?
    @Option(name: .customLong("max-document-chars"), help: "Cut every document to its first this-many characters (quick runs).")
    var maxDocumentCharacters: Int?
    @Option(name: .customLong("sanity-prompts"), help: "Held-out sentences for the generation check (T8).") var sanityPrompts = 50
    @Option(help: "Perplexity window in tokens (the protocol's is 512; smaller only for quick runs).") var window = 512
    @Option(help: "Perplexity stride in tokens (the protocol's is 256).") var stride = 256
    @Option(name: .customLong("t6-windows"), help: "Windows of each of T1, T2 and T5 on which T6 compares forgetting with never learning.")
    var deletionWindows = 16
    @Option(help: "Comma-separated tasks to run (t1,t2,t3,t4,t5,t6,t8,t9; default: all).") var tasks: String?
    @Option(help: ArgumentHelp(
        "An earlier result (a checkpoint) whose systems are taken as they are instead of being run again.",
        discussion: "It must come from the same corpus, model and options, and the base must answer the items as it did then."))
    var reuse: String?
    @Option(help: "Comma-separated systems to run again although --reuse's result holds them (their code changed).")
    var rerun: String?
    @Option(help: "The reader (a twinbrain.reader/1 JSON file, as fit-reader --weights-out writes) for hybrid-reader, instead of the one shipped for the model.")
    var reader: String?

    func run() throws {
        SystemRegistry.readerFile = reader
        let corpus = try FreshDocsCorpus.load(self.corpus)
        let (model, tokenizer) = try options.loadModel()
        var o = FreshDocsRun.Options()
        o.maxDocuments = maxDocuments
        o.maxItems = maxItems
        o.maxDocumentCharacters = maxDocumentCharacters
        o.deletionWindows = deletionWindows
        o.sanityPrompts = sanityPrompts
        guard window >= 2, stride >= 1, stride <= window else {
            throw ValidationError("--window must be at least 2 and --stride between 1 and the window")
        }
        o.window = window
        o.stride = stride
        o.tasks = tasks.map { Set($0.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) }
        var run = FreshDocsRun(corpus: corpus, model: model, modelPath: try options.resolvedModelPath(), tokenizer: tokenizer, options: o)
        run.progress = { label, done, total in progressLine(label, done, total) }
        if let reuse {
            try run.reusing(Self.read(reuse), except: Set((rerun ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }))
        } else if rerun != nil {
            throw ValidationError("--rerun goes with --reuse")
        }
        let ids = systems.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let out = self.out
        run.onPartialResult = { partial in
            do {
                try Self.write(partial, to: out)
                FileHandle.standardError.write(Data("checkpoint: \(out) holds the systems done so far\n".utf8))
            } catch {
                FileHandle.standardError.write(Data("could not write the checkpoint \(out): \(error)\n".utf8))
            }
        }
        let result = try run.run(systems: ids)
        let stem = try Self.write(result, to: out)
        print(FreshDocsReport.markdown(result.json))
        FileHandle.standardError.write(Data("wrote \(out), \(stem).md and \(stem).items.jsonl\n".utf8))
    }

    /// A result written by `write` (the JSON and the item outcomes beside it).
    static func read(_ path: String) throws -> FreshDocsRun.Result {
        guard let data = FileManager.default.contents(atPath: path),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ValidationError("cannot read the earlier result \(path) as JSON")
        }
        let stem = path.hasSuffix(".json") ? String(path.dropLast(5)) : path
        guard let lines = try? String(contentsOfFile: stem + ".items.jsonl", encoding: .utf8) else {
            throw ValidationError("the earlier result has no \(stem).items.jsonl beside it")
        }
        let outcomes = try lines.split(separator: "\n").map { try JSONDecoder().decode(ItemOutcome.self, from: Data($0.utf8)) }
        return FreshDocsRun.Result(json: json, itemOutcomes: outcomes)
    }

    /// The JSON, the table beside it (.md) and the item outcomes (.items.jsonl); returns the stem.
    @discardableResult
    static func write(_ result: FreshDocsRun.Result, to out: String) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: result.json, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try data.write(to: URL(fileURLWithPath: out), options: .atomic)
        let stem = out.hasSuffix(".json") ? String(out.dropLast(5)) : out
        try FreshDocsReport.markdown(result.json).write(toFile: stem + ".md", atomically: true, encoding: .utf8)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let lines = try result.itemOutcomes.map { String(decoding: try encoder.encode($0), as: UTF8.self) + "\n" }.joined()
        try lines.write(toFile: stem + ".items.jsonl", atomically: true, encoding: .utf8)
        return stem
    }
}
