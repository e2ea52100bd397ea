import ArgumentParser
import Foundation
import MainBrain

struct Perplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a text file: sliding window, or llama.cpp's chunks.",
        discussion: """
            Sliding window (default, as in the evaluation protocol): windows of --window tokens \
            every --stride tokens, each scoring only tokens not scored before. \
            --chunks N reproduces `llama-perplexity -c N`: non-overlapping chunks of N tokens, \
            scoring the second half of each.
            """)

    @OptionGroup var options: ModelOptions
    @OptionGroup var input: InputOptions

    @Option(help: "Window length in tokens.")
    var window = 512
    @Option(help: "Tokens between window starts.")
    var stride = 256
    @Option(help: "llama.cpp's chunked mode with chunks of this many tokens.")
    var chunks: Int?

    func validate() throws {
        guard window > 0, stride > 0, stride <= window else { throw ValidationError("need 0 < --stride <= --window") }
        if let chunks, chunks < 4 { throw ValidationError("--chunks must be at least 4") }
    }

    func run() throws {
        let (model, tokenizer) = try options.loadModel()
        let ids = tokenizer.encode(try input.read(), parseSpecial: input.special, addBOS: false)
        let scorer = Scorer(model: model)
        let result: Scorer.PerplexityResult
        if let chunks {
            guard ids.count >= chunks else {
                throw ValidationError("the text has \(ids.count) tokens, fewer than one chunk of \(chunks)")
            }
            result = try scorer.chunkedPerplexity(ids, chunk: chunks) { progressLine("perplexity", $0, $1) }
        } else {
            result = try scorer.slidingPerplexity(ids, window: window, stride: stride) { progressLine("perplexity", $0, $1) }
        }
        if options.json {
            printJSON(["ppl": result.perplexity, "tokens_scored": result.tokensScored])
        } else {
            print(String(format: "perplexity %.4f over %d tokens", result.perplexity, result.tokensScored))
        }
    }
}
