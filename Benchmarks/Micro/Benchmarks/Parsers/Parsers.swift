import Benchmark
import Corpus
import IRCCore
import RawSAX
import XMLCore

// Issue 8's microbenchmarks.
// - XML: our stream parser (libxml2's push parser, SAX events turned into XMLElement values)
//   against libxml2's push parser with C callbacks that only count, on the same bytes in the
//   same chunks. Goal: at least 40% of the raw parser's throughput.
// - IRC: parse and serialize one line. Goal: at least 1 M lines/s parsed.

let stanzaCount = 5_000
let stream = componentStream(stanzas: stanzaCount)
let chunk = 8_192

func parseRaw() -> RawSAXCounts {
    stream.withUnsafeBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) { rawsax_parse($0.baseAddress, $0.count, chunk) }
    }
}

func parseOurs() -> Int { parseWithXMLStreamParser(stream, chunk: chunk) }

let ircSample: [[UInt8]] = [
    Array(":carol!~carol@host.example.org PRIVMSG #ops :the deploy finished, all green".utf8),
    Array("@time=2026-11-25T10:00:00.000Z;msgid=abc123;account=carol :carol!~carol@host.example.org PRIVMSG #ops :ok, merging now".utf8),
    Array(":dave!~dave@10.0.0.7 JOIN #ops".utf8),
    Array(":irc.example.org 353 sbridge = #ops :@carol +dave erin frank gina hank ivy jack".utf8),
    Array(":erin!~erin@host PRIVMSG #ops :\u{1}ACTION waves\u{1}".utf8),
    Array("PING :irc.example.org".utf8),
    [UInt8](":frank!~f@h PRIVMSG #ops :caf".utf8) + [0xE9, 0x20, 0x96, 0x20] + Array("cp1252 from mIRC".utf8),
    Array(":gina!~g@h NICK :gina_away".utf8),
]
let ircParsed = ircSample.map { try! IRCMessage(parsing: $0) }

let benchmarks: @Sendable () -> Void = {
    // Both parsers must see the same stream, or the comparison means nothing.
    let raw = parseRaw()
    precondition(raw.error == 0, "libxml2 rejected the corpus")
    precondition(Int(raw.elements) == parseOurs(), "the two parsers counted different elements")

    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions],
        maxDuration: .seconds(3), maxIterations: 1_000_000)

    // One iteration is the whole corpus (5,000 stanzas, about 1.6 MB), fed in 8 KiB chunks.
    Benchmark("XML raw libxml2 SAX, counting only (5,000 stanzas)") { benchmark in
        blackHole(parseRaw())
    }
    Benchmark("XML XMLStreamParser, elements built (5,000 stanzas)") { benchmark in
        blackHole(parseOurs())
    }
    Benchmark("IRC parse", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for i in benchmark.scaledIterations { blackHole(try? IRCMessage(parsing: ircSample[i % ircSample.count])) }
    }
    Benchmark("IRC serialize", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for i in benchmark.scaledIterations { blackHole(ircParsed[i % ircParsed.count].line()) }
    }
}
