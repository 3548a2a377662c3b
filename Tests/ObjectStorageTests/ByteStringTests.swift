// ByteString: keys compare, hash and sort by their UTF-8 bytes, not by Unicode canonical
// equivalence as `String` does.

import ObjectStorage
import Testing

@Suite struct ByteStringTests {
    static let nfc = "caf\u{E9}"  // é precomposed: C3 A9
    static let nfd = "cafe\u{301}"  // e + combining acute: 65 CC 81

    @Test func spellingsInDifferentNormalizationFormsAreDistinct() {
        // What goes wrong with String: the two spellings are one key to it.
        #expect(Self.nfc == Self.nfd)
        #expect(Set([Self.nfc, Self.nfd]).count == 1)

        #expect(ByteString(Self.nfc) != ByteString(Self.nfd))
        #expect(!Self.nfc.hasSameBytes(as: Self.nfd))
        #expect(Self.nfc.hasSameBytes(as: "caf\u{E9}"))
        #expect(Set([Self.nfc.byteString, Self.nfd.byteString]).count == 2)
        var d: [ByteString: Int] = [:]
        d[bytes: Self.nfc] = 1
        d[bytes: Self.nfd] = 2
        #expect(d.count == 2 && d[bytes: Self.nfc] == 1 && d[bytes: Self.nfd] == 2)
        #expect(
            Set(d.keys.map { Array($0.utf8) }) == [
                [0x63, 0x61, 0x66, 0xC3, 0xA9], [0x63, 0x61, 0x66, 0x65, 0xCC, 0x81],
            ])
        // The string is kept exactly as given.
        #expect(Array(ByteString(Self.nfd).string.utf8) == Array(Self.nfd.utf8))
        // A singleton decomposition: KELVIN SIGN is canonically equivalent to K.
        #expect("\u{212A}" == "K")
        #expect(ByteString("\u{212A}") != ByteString("K"))
    }

    @Test func equalBytesAreEqualAndHashAlike() {
        let a = ByteString("dir/f\u{E9}e")
        let b = ByteString(String(decoding: Array("dir/f\u{E9}e".utf8), as: UTF8.self))
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(ByteString("") == ByteString(""))
        #expect(ByteString(Substring("xabcx").dropFirst().dropLast()) == "abc")
        // Long (heap-allocated) strings as well as small ones.
        let long = String(repeating: "é", count: 100)
        #expect(ByteString(long) == ByteString(long + ""))
        #expect(ByteString(long) != ByteString(String(repeating: "e\u{301}", count: 100)))
    }

    @Test func ordersByBytesAsS3AndSwiftList() {
        // Uppercase before lowercase before any non-ASCII; a proper prefix first.
        let keys = ["é", "a", "Z", "ab", "a b", "", "\u{7F}", "e\u{301}", "z"]
        let sorted = keys.map { ByteString($0) }.sorted().map(\.string)
        let expected = ["", "Z", "a", "a b", "ab", "e\u{301}", "z", "\u{7F}", "é"]
        #expect(sorted.map { Array($0.utf8) } == expected.map { Array($0.utf8) })
        #expect(keys.sortedInByteOrder().map { Array($0.utf8) } == expected.map { Array($0.utf8) })
        #expect(ByteString("Z") < ByteString("a") && ByteString("a") < ByteString("é"))
        #expect("Z".precedesInByteOrder("a") && "a".precedesInByteOrder("é"))
        #expect(!"a".precedesInByteOrder("a"))
        // NFD (0x65 ...) sorts before NFC (0xC3 ...).
        #expect(ByteString(Self.nfd) < ByteString(Self.nfc))
        // String's own order does not tell the two apart at all.
        #expect(!(Self.nfd < Self.nfc) && !(Self.nfc < Self.nfd))
    }

    @Test func prefixIsABytePrefix() {
        #expect(ByteString(Self.nfd).hasPrefix("cafe"))
        #expect(!Self.nfd.hasPrefix("cafe"))  // String compares characters
        #expect(!ByteString(Self.nfc).hasPrefix("cafe"))
        #expect(ByteString(Self.nfc).hasPrefix(""))
        #expect(!ByteString("ab").hasPrefix("abc"))
    }

    @Test func debugDescriptionShowsTheSpelling() {
        #expect(ByteString(Self.nfd).debugDescription == #""cafe\u{301}""#)
        #expect(ByteString(Self.nfc).debugDescription == #""caf\u{E9}""#)
        #expect(ByteString("a\"b\\").debugDescription == #""a\"b\\""#)
        #expect(ByteString(Self.nfc).description == Self.nfc)
    }
}

@Suite struct ETagTests {
    @Test(arguments: [
        "d41d8cd98f00b204e9800998ecf8427e", "\"d41d8cd98f00b204e9800998ecf8427e\"",
        "00000000000000000000000000000000", "\"0000000000000000ffffffffffffffff\"",
        "D41D8CD98F00B204E9800998ECF8427E", "\"d41d8cd98f00b204e9800998ecf8427e-3\"",
        "d41d8cd98f00b204e9800998ecf8427", "\"d41d8cd98f00b204e9800998ecf8427e", "", "W/\"x\"", "é",
    ])
    func anETagReadsBackAsWrittenAndComparesAsItsText(_ text: String) {
        let tag = ETag(text)
        #expect(tag.value == text)
        #expect(tag == ETag(text) && tag.hashValue == ETag(text).hashValue)
        // Another spelling is another ETag: quotes, case.
        #expect(tag != ETag(text + "0"))
        #expect(ETag(text.uppercased()) == tag || text.uppercased() != text)
        var changed = tag
        changed.value = "abc"
        #expect(changed == ETag("abc") && changed.value == "abc")
    }

    @Test func quotedAndBareMD5sAreDifferentETags() {
        #expect(ETag("d41d8cd98f00b204e9800998ecf8427e") != ETag("\"d41d8cd98f00b204e9800998ecf8427e\""))
        #expect(ETag("d41d8cd98f00b204e9800998ecf8427e") != ETag("D41D8CD98F00B204E9800998ECF8427E"))
    }
}
