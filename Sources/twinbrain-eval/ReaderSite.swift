import ArgumentParser
import Evaluation
import Foundation
import LearningBrain
import MainBrain

struct ReaderSite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reader-site",
        abstract: "Measure the reader's on-site learning on a corpus's documents, for fitting variants.",
        discussion: """
            Learns the corpus's learned documents as the daemon's reader does on site (template \\
            questions on their own lines; `ReaderSiteLearning`), keeping each document's examples \\
            in --cache (made once, read back after), then for each fitting variant reports how \\
            many answers it lands (per shard, summed) on questions it was not fitted on (the two-fold check the box \\
            runs before using an adapter) against the shipped reader. Synthetic questions only: \\
            the corpus's items are never read.
            """)

    @OptionGroup var options: ModelOptions
    @Option(help: "The corpus directory (FreshDocs format).") var corpus: String
    @Option(help: "Keep each document's examples here (made when missing).") var cache: String
    @Option(help: "Adam steps to try, comma-separated.") var steps = "50,150,400"
    @Option(help: "Learning rates to try, comma-separated.") var learningRates = "0.003,0.01,0.03"
    @Option(help: "L2 penalties to try, comma-separated.") var l2 = "0.001,0.01"

    func run() throws {
        let (model, tokenizer) = try options.loadModel()
        let path = try options.resolvedModelPath()
        guard let weights = ReaderWeights.shipped(forShape: FittedKeyspace.shape(model.config), sha256: { Hashing.fileSHA256(path) }),
              let template = try? ChatTemplate(source: model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer)
        else { throw ValidationError("no reader is shipped for \(path), or it has no chat template") }
        let reader = Reader(weights: weights)
        let site = ReaderSiteLearning(model: model, tokenizer: tokenizer, template: template, reader: reader)
        let files = try DocumentFiles(path: cache, suffix: "rdx")
        var documents: [Int64: [ReaderExample]] = [:], shards: [Int64: String] = [:]
        let learned = try FreshDocsCorpus.load(corpus).learned
        let began = Date()
        for (n, d) in learned.enumerated() {
            let id = Int64(n + 1)
            shards[id] = ReaderSiteLearning.shard(of: d.id)
            if let data = try? files.read(id), let kept = try? ReaderExampleFile.decoded(data, rank: weights.rank, reader: reader.identity) {
                documents[id] = kept.examples
                continue
            }
            progressLine("questions", n, learned.count)
            let passages = DocumentPassageBuilder.standard.records(of: d.text, tokenizer: tokenizer).map { ($0.header, $0.text) }
            documents[id] = try site.learn(path: d.id, passages: passages).examples
            try files.write(ReaderExampleFile.encoded(documents[id]!, document: id, shard: ReaderSiteLearning.shard(of: d.id), rank: weights.rank,
                                                     reader: reader.identity), document: id)
        }
        let ordered = documents.keys.sorted().flatMap { documents[$0]! }
        print("\(learned.count) documents, \(ordered.count) examples (\(ordered.filter(\.answerable).count) answerable), "
            + String(format: "%.0f s to make them", Date().timeIntervalSince(began)))
        func list<T: LosslessStringConvertible>(_ text: String) -> [T] { text.split(separator: ",").compactMap { T(String($0)) } }
        for features in [nil, ReaderFeatures.lexicalCount] {
            for s in list(steps) as [Int] {
                for lr in list(learningRates) as [Float] {
                    for penalty in list(l2) as [Float] {
                        var fitting = ReaderAdapterFitting()
                        fitting.steps = s
                        fitting.learningRate = lr
                        fitting.l2 = penalty
                        fitting.tokenFeatures = features
                        // Per shard, as the box fits them.
                        var c = ReaderAdapterFitting.Check()
                        for shard in Set(shards.values) {
                            let part = documents.keys.sorted().filter { shards[$0] == shard }.flatMap { documents[$0]! }
                            let one = fitting.check(part, rank: weights.rank)
                            c.examples += one.examples
                            c.adapted += one.adapted
                            c.shipped += one.shipped
                        }
                        print("features \(features.map(String.init) ?? "all") steps \(s) lr \(lr) l2 \(penalty): adapted lands \(c.adapted) of \(c.examples), shipped \(c.shipped)")
                    }
                }
            }
        }
    }
}

