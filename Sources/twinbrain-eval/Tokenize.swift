import ArgumentParser
import MainBrain

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the token ids of a text file (no BOS added).")

    @OptionGroup var options: ModelOptions
    @OptionGroup var input: InputOptions

    func run() throws {
        let tokenizer = try options.loadTokenizer()
        let ids = tokenizer.encode(try input.read(), parseSpecial: input.special, addBOS: false)
        if options.json {
            printJSON(["ids": ids.map { Int($0) }])
        } else {
            for id in ids {
                print(id, String(reflecting: tokenizer.decode([id], renderSpecial: true)))
            }
        }
    }
}
