import ArgumentParser
import Evaluation
import Foundation
import LearningBrain

struct FitRecall: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit-recall",
        abstract: "Fit passage recall's relevance floor on a public corpus (see `make recall-floor`).",
        discussion: """
            Indexes the passages of the corpus's learned documents; every 32 tokens, the last 64 \\
            tokens of its general texts recall their best BM25 passage, and the share of the \\
            window's content words the passage holds (weighted by rarity) is measured. The floor \\
            is the smallest multiple of 0.05 that at most one general window in 200 reaches. \\
            Held-out documents and items are reported. Prints the result as JSON; ship it by \\
            setting PassageRelevance.floor (a test checks they agree). Never run it on customer data.
            """)

    @OptionGroup var options: ModelOptions
    @Option(help: "The corpus directory (FreshDocs format).") var corpus: String
    @Option(help: "Write the JSON here as well as printing it.") var out: String?

    func run() throws {
        let (_, tokenizer) = try options.loadModel()
        let result = try RecallFloorFitting(tokenizer: tokenizer).run(try FreshDocsCorpus.load(corpus))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(result)
        if let out { try data.write(to: URL(fileURLWithPath: out)) }
        print(String(decoding: data, as: UTF8.self))
        if result.floor != PassageRelevance.floor {
            FileHandle.standardError.write(Data("fitted floor \(result.floor) differs from the shipped \(PassageRelevance.floor): set PassageRelevance.floor and rebuild\n".utf8))
        }
    }
}
