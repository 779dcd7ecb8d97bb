import XMLCore

/// A component stream as a bridge reads it from a MUC: groupchat messages with stanza ids and
/// escaped text, occupant presences with muc#user items and status codes, a subject now and then.
public func componentStream(stanzas: Int) -> [UInt8] {
    var text = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
        + "xmlns:stream='http://etherx.jabber.org/streams' from='bridge.example.org' id='s1'>"
    for i in 0..<stanzas {
        switch i % 10 {
        case 0, 5:
            text += "<presence from='ops@rooms.example.org/user\(i % 97)' to='bridge.example.org' id='p\(i)'>"
                + "<show>away</show><status>in a meeting &amp; back at 3</status>"
                + "<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' role='participant' "
                + "jid='user\(i % 97)@example.org/gajim.X1b2'/><status code='100'/></x></presence>"
        case 9:
            text += "<message from='ops@rooms.example.org/carol' to='bridge.example.org' type='groupchat' id='s\(i)'>"
                + "<subject>Deploys on Thursdays only — see the wiki</subject></message>"
        default:
            text += "<message from='ops@rooms.example.org/user\(i % 97)' to='bridge.example.org' type='groupchat' "
                + "id='m\(i)' xml:lang='en'><body>the deploy of build #\(i) finished &lt;all green&gt;, "
                + "merging now; ça marche 👍</body><stanza-id xmlns='urn:xmpp:sid:0' id='2026-\(i)' "
                + "by='ops@rooms.example.org'/><origin-id xmlns='urn:xmpp:sid:0' id='o\(i)'/></message>"
        }
    }
    return Array(text.utf8)
}

/// Feeds `stream` to a new XMLStreamParser in `chunk`-byte pieces; returns the elements it built.
public func parseWithXMLStreamParser(_ stream: [UInt8], chunk: Int) -> Int {
    let parser = XMLStreamParser()
    var elements = 0
    var offset = 0
    while offset < stream.count {
        let end = min(offset + chunk, stream.count)
        for event in try! parser.feed(stream[offset..<end]) {
            switch event {
            case .streamOpened: elements += 1
            case .element(let element): elements += countElements(element)
            case .streamClosed: break
            }
        }
        offset = end
    }
    return elements
}

func countElements(_ element: XMLElement) -> Int {
    var count = 1
    for case .element(let child) in element.children { count += countElements(child) }
    return count
}
