import ArgumentParser
import MainBrain

struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits", abstract: "Print the top-K logits at every position of a text file.")

    @OptionGroup var options: ModelOptions
    @OptionGroup var input: InputOptions

    @Option(help: "How many logits per position.")
    var top = 8

    func run() throws {
        let (model, tokenizer) = try options.loadModel()
        let ids = tokenizer.encode(try input.read(), parseSpecial: input.special, addBOS: false)
        let cache = model.makeCache(capacity: ids.count)
        let logits = try model.forward(ids, cache: cache, logits: .all)
        var topk: [[[Any]]] = []
        for p in 0..<logits.rows {
            let row = logits.row(p)
            let best = row.indices.sorted { row[$0] > row[$1] }.prefix(top)
            topk.append(best.map { [$0 - row.startIndex, Double(row[$0])] })
        }
        if options.json {
            printJSON(["ids": ids.map { Int($0) }, "topk": topk])
        } else {
            for (p, entries) in topk.enumerated() {
                let text = entries.map { e in
                    let id = e[0] as! Int
                    return "\(id) \(String(reflecting: tokenizer.decode([Int32(id)], renderSpecial: true))) \(e[1])"
                }
                print("\(p) [\(ids[p])]: " + text.joined(separator: ", "))
            }
        }
    }
}
