import ObjectStorage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct TimestampTests {
    @Test(arguments: [
        ("1700000000", Timestamp(seconds: 1_700_000_000)),
        ("1700000000.5", Timestamp(seconds: 1_700_000_000, nanoseconds: 500_000_000)),
        ("1700000000.123456789", Timestamp(seconds: 1_700_000_000, nanoseconds: 123_456_789)),
        ("1700000000.1234567891", Timestamp(seconds: 1_700_000_000, nanoseconds: 123_456_789)),
        ("1700000000.000001", Timestamp(seconds: 1_700_000_000, nanoseconds: 1000)),
        (" 12.25 ", Timestamp(seconds: 12, nanoseconds: 250_000_000)),
        ("-1.5", Timestamp(seconds: -2, nanoseconds: 500_000_000)),
    ])
    func parsesMetadataValues(_ text: String, _ expected: Timestamp) {
        #expect(Timestamp(metadataValue: text) == expected)
    }

    @Test(arguments: ["", "abc", "1.2.3", "1e9", ".5", "12.x"])
    func rejectsGarbage(_ text: String) {
        #expect(Timestamp(metadataValue: text) == nil)
    }

    @Test func compactUTCNamesSortByTime() {
        #expect(Timestamp(seconds: 0).compactUTC == "19700101-000000")
        #expect(Timestamp(seconds: 1_796_374_406, nanoseconds: 999_999_999).compactUTC == "20261204-085326")
    }

    @Test func roundTripsThroughTheMetadataString() {
        for t in [
            Timestamp(seconds: 0), Timestamp(seconds: 1_700_000_000, nanoseconds: 1),
            Timestamp(seconds: 1_700_000_000, nanoseconds: 999_999_999),
            Timestamp(seconds: -2, nanoseconds: 500_000_000),
        ] {
            #expect(Timestamp(metadataValue: t.metadataValue) == t)
        }
        #expect(Timestamp(seconds: 5, nanoseconds: 500_000_000).metadataValue == "5.5")
    }
}

@Suite struct StorageErrorTests {
    @Test func everyCaseHasItsErrno() {
        #expect(StorageError.notFound("k").errno == ENOENT)
        #expect(StorageError.preconditionFailed("k").errno == ESTALE)
        #expect(StorageError.accessDenied("x").errno == EACCES)
        #expect(StorageError.quotaExceeded.errno == EDQUOT)
        #expect(StorageError.entityTooLarge.errno == EFBIG)
        #expect(StorageError.notEmpty("b").errno == ENOTEMPTY)
        #expect(StorageError.unavailable("down").errno == EIO)
        #expect(StorageError.malformedReply("x").errno == EIO)
        #expect(StorageError.localIO(ENOSPC, "disk").errno == ENOSPC)
    }
}
