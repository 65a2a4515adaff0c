import KVStore
import Testing
@testable import KVServer

/// F8 of issue #11: server-side failures tell the client what kind of failure it was, never the
/// server's paths or errno text (those go to the log through `detail`).
struct ErrorBodyTests {
    @Test func serverFaultBodiesNameNoPaths() {
        let full = APIError.from(StoreError.noSpace("write /var/lib/kvstore/tmp/blob-1234: No space left on device"))
        #expect(full.status.code == 507)
        #expect(!full.message.contains("/var/lib") && full.detail?.contains("/var/lib/kvstore") == true)
        let broken = APIError.from(StoreError.notWritable("/srv/kvstore: Permission denied"))
        #expect(broken.status.code == 500 && !broken.message.contains("/srv"))
        let index = APIError.from(StoreError.index("open /srv/kvstore/index: Input/output error"))
        #expect(!index.message.contains("/srv"))
    }

    @Test func clientFaultsKeepTheirReason() {
        let bad = APIError.from(StoreError.invalidInput("model id must be 1 to 256 characters"))
        #expect(bad.status == .badRequest && bad.message.contains("model id"))
    }
}
