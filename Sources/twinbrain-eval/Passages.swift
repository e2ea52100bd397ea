import ArgumentParser
import Foundation
import LearningBrain
import MainBrain

struct PassagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passages",
        abstract: "Print the passages the learning brain cuts a text file into: lines, headings, tokens, text.")

    @OptionGroup var options: ModelOptions
    @OptionGroup var input: InputOptions

    func run() throws {
        let tokenizer = try options.loadTokenizer()
        let passages = DocumentPassageBuilder.standard.passages(of: String(decoding: try input.read(), as: UTF8.self), countTokens: { tokenizer.encode($0).count })
        if options.json {
            printJSON(["passages": passages.map { p in
                ["header": p.header, "text": p.text, "line_start": p.lines.lowerBound, "line_end": p.lines.upperBound,
                 "page": p.page.map { $0 as Any } ?? NSNull(), "tokens": p.tokens] as [String: Any]
            }])
            return
        }
        for p in passages {
            print("── lines \(p.lines.lowerBound)–\(p.lines.upperBound)\(p.page.map { ", page \($0)" } ?? ""), \(p.tokens) tokens"
                + (p.header.isEmpty ? "" : " · \(p.header)"))
            print(p.text)
        }
    }
}
