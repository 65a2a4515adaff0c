/* A C caller of libkvstore_c through include/kvstore.h only (built and run by test_pypkg.py), so the
 * header's declarations and struct layouts are checked against the library itself.
 *
 * usage: kvstore_smoke CONTAINER OUT_RAW STREAM_BODY OUT_STREAM_RAW
 *   decodes a chunk container into a caller buffer sized by kvs_chunk_info (-> OUT_RAW), reads a
 *   frame stream fed in 1000-byte pieces (its chunks' KV, in order -> OUT_STREAM_RAW), and checks
 *   that garbage gets KVS_E_CORRUPT with a message. Prints one line per step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kvstore.h"

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(size > 0 ? (size_t)size : 1);
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) { perror(path); exit(2); }
    fclose(f);
    *n = (size_t)size;
    return buf;
}

#define CHECK(call) do { int rc_ = (call); if (rc_ < 0) { \
    fprintf(stderr, "%s failed: %d %s\n", #call, rc_, kvs_last_error()); return 1; } } while (0)

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: kvstore_smoke CONTAINER OUT_RAW STREAM_BODY OUT_STREAM_RAW\n"); return 2; }
    printf("abi %d: %s\n", kvs_abi_version(), kvs_version_string());
    if (kvs_abi_version() != KVS_ABI_VERSION) return 1;

    size_t n;
    unsigned char *container = slurp(argv[1], &n);
    kvs_info info;
    CHECK(kvs_chunk_info(container, n, &info));
    printf("chunk level %d dtype %d shape [%lld, 2, %lld, %lld, %lld] nbytes %lld\n", info.level, info.dtype,
           (long long)info.layers, (long long)info.tokens, (long long)info.kv_heads, (long long)info.head_dim,
           (long long)info.nbytes);
    void *buf = malloc((size_t)info.nbytes);
    kvs_tensor *t = NULL;
    CHECK(kvs_chunk_decode(container, n, &t));
    if (kvs_tensor_copy(t, buf, (size_t)info.nbytes - 1) != KVS_E_ARGUMENT) return 1;  /* too small */
    CHECK(kvs_tensor_copy(t, buf, (size_t)info.nbytes));
    kvs_info tinfo;
    kvs_tensor_info(t, &tinfo);
    if (tinfo.nbytes != info.nbytes || tinfo.tokens != info.tokens || memcmp(buf, kvs_tensor_data(t), (size_t)info.nbytes)) return 1;
    kvs_tensor_free(t);
    FILE *out = fopen(argv[2], "wb");
    fwrite(buf, 1, (size_t)info.nbytes, out);
    fclose(out);
    free(buf);

    unsigned char *body = slurp(argv[3], &n);
    kvs_stream *s = kvs_stream_new();
    out = fopen(argv[4], "wb");
    int events = 0;
    for (size_t off = 0; off < n; off += 1000) {
        CHECK(kvs_stream_feed(s, body + off, n - off < 1000 ? n - off : 1000));
        kvs_event e;
        kvs_tensor *kv = NULL;
        int rc;
        while ((rc = kvs_stream_next(s, &e, &kv)) == 1) {
            events++;
            if (e.kind == KVS_EVENT_CHUNK) {
                kvs_tensor_info(kv, &tinfo);
                printf("event chunk %lld tokens %lld..%lld level %d payload %lld decoded %lld\n", (long long)e.index,
                       (long long)e.token_start, (long long)e.token_end, e.level, (long long)e.payload_bytes,
                       (long long)tinfo.nbytes);
                fwrite(kvs_tensor_data(kv), 1, (size_t)tinfo.nbytes, out);
                kvs_tensor_free(kv);
                kv = NULL;
            } else {
                printf("event kind %d json %.*s\n", e.kind, (int)(e.json_length > 40 ? 40 : e.json_length), e.json);
            }
        }
        CHECK(rc);
    }
    fclose(out);
    CHECK(kvs_stream_finish(s));
    kvs_stream_free(s);
    printf("stream events %d\n", events);

    unsigned char garbage[64];
    memset(garbage, 'X', sizeof garbage);
    kvs_tensor *none = NULL;
    int rc = kvs_chunk_decode(garbage, sizeof garbage, &none);
    printf("garbage: %d %s\n", rc, kvs_last_error());
    return rc == KVS_E_CORRUPT && none == NULL ? 0 : 1;
}
