@testable import FuseKit
import Testing

@Suite struct LookupCounterTests {
    @Test func countsUpAndFreesAtZero() {
        let c = LookupCounter()
        c.add(5)
        c.add(5)
        c.add(7, 3)
        #expect(c.count(5) == 2)
        #expect(!c.forget(5, 1))
        #expect(c.forget(5, 1))
        #expect(c.count(5) == 0)
        #expect(!c.forget(7, 2))
        #expect(c.forget(7, 1))
        #expect(c.trackedInodes == 0)
    }

    @Test func forgettingMoreThanCountedFreesWithoutUnderflow() {
        let c = LookupCounter()
        c.add(9)
        #expect(c.forget(9, 10))
        #expect(c.forget(9, 1))  // unknown inode: already free
    }
}

@Suite struct MountOptionStringTests {
    @Test func allowOtherAlwaysComesWithDefaultPermissions() {
        var o = FuseMountOptions(fsName: "objmount:memory://b")
        o.allowOther = true
        o.readOnly = true
        let s = o.optionString
        #expect(s.contains("default_permissions"))
        #expect(s.contains("allow_other"))
        #expect(s.contains(",ro"))
        #expect(s.contains("subtype=objmount"))
        #expect(s.contains("max_read=1048576"))
        #expect(o.arguments.first == "objmount")
    }

    @Test func commasInTheSourceAreEscaped() {
        #expect(FuseMountOptions.escape("a,b\\c") == "a\\,b\\\\c")
    }
}

@Suite struct MountTableTests {
    @Test func parsesMountinfoLines() {
        let text = """
            36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
            42 27 0:39 / /tmp/my\\040mnt rw,nosuid,nodev,relatime - fuse.objmount objmount:memory://b rw,user_id=0
            """
        let m = MountTable.parse(text)
        #expect(m.count == 2)
        #expect(m[1].mountpoint == "/tmp/my mnt")
        #expect(m[1].fsType == "fuse.objmount")
        #expect(m[1].device == "0:39")
        #expect(m[1].source == "objmount:memory://b")
        #expect(m[0].fsType == "ext3")
    }
}

@Suite struct BufferPoolTests {
    @Test func reusesBuffersOfTheStandardSize() {
        let pool = BufferPool(bufferSize: 4096, keep: 2)
        let a = pool.take(100)
        let address = a.buffer.baseAddress
        pool.give(a)
        let b = pool.take(4096)
        #expect(b.buffer.baseAddress == address)
        let big = pool.take(10_000)
        #expect(big.buffer.count >= 10_000)
        pool.give(big)
        pool.give(b)
    }
}
