import Corpus
import RawSAX

// One parse of the benchmark's corpus by the parser named on the command line, for
// `valgrind --tool=callgrind`, which counts instructions the same way on every run:
//   valgrind --tool=callgrind .build/release/ParseCount ours|raw [times]
let stream = componentStream(stanzas: 5_000)
let times = Int(CommandLine.arguments.dropFirst(2).first ?? "") ?? 1
var elements = 0
for _ in 0..<times {
    if CommandLine.arguments.dropFirst().first == "raw" {
        elements += stream.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { Int(rawsax_parse($0.baseAddress, $0.count, 8_192).elements) }
        }
    } else {
        elements += parseWithXMLStreamParser(stream, chunk: 8_192)
    }
}
print(elements)
