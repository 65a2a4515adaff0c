/* kvstore.h: the C ABI of libkvstore_c (SwiftPM product `kvstore_c`, target Sources/KVStoreC).
 *
 * The library is the project's own codec and stream reader (KVCodec, KVTransport) behind plain C
 * functions; nothing here is a second implementation of a format. Formats: schemas/chunk-container.md
 * (chunk containers and .kvc files), schemas/stream-frames.md (stream frames). Guide: docs/python.md.
 *
 * Conventions
 * - Every function that can fail returns an int: 0 (KVS_OK) or a negative KVS_E_* code; the
 *   one-line reason is kvs_last_error() on the same thread, valid until that thread's next call.
 * - Handles (kvs_tensor, kvs_bytes, kvs_stream) are owned by the caller and released with their
 *   _free function. Pointers into a handle are valid until it is freed. A handle is not
 *   thread-safe; distinct handles may be used on distinct threads at once.
 * - A decoded KV tensor has shape [layers, 2, tokens, kv_heads, head_dim] (axis 1: 0 = keys,
 *   1 = values), little-endian elements of `dtype` (KVS_DTYPE_*; BF16 as raw 16-bit patterns).
 * - Decoding allocates its output once, in the codec; kvs_tensor_data borrows it (no copy) and
 *   kvs_tensor_copy copies it into a caller-provided buffer. kvs_chunk_info reads a container's
 *   shape and dtype without decoding, to size such a buffer first.
 */
#ifndef KVSTORE_H
#define KVSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVS_ABI_VERSION 3  /* 2: llama.cpp sequence states, GGUF model ids; 3: sliding-window caches, F32 caches, encode with a profile */

/* Error codes (negative). */
#define KVS_OK            0
#define KVS_E_ARGUMENT   -1  /* a null pointer, a bad level or dtype, a buffer too small */
#define KVS_E_TRUNCATED  -2  /* input ends early */
#define KVS_E_CORRUPT    -3  /* input is not what it claims (bad magic, checksum, sizes) */
#define KVS_E_UNSUPPORTED -4 /* a version, codec or dtype this build does not know */
#define KVS_E_LIMIT      -5  /* a size over the format's bounds */
#define KVS_E_STREAM     -6  /* a malformed or out-of-order frame stream */
#define KVS_E_SERVER     -7  /* the stream carried an error frame (message: the server's) */
#define KVS_E_INTERNAL   -8  /* anything else */

/* Element types (the chunk container's dtype codes). */
#define KVS_DTYPE_F16  1
#define KVS_DTYPE_BF16 2
#define KVS_DTYPE_F32  3

typedef struct kvs_tensor kvs_tensor;
typedef struct kvs_bytes kvs_bytes;
typedef struct kvs_stream kvs_stream;

/* Shape and type of a KV tensor or of a chunk container's content. */
typedef struct {
    int32_t dtype;       /* KVS_DTYPE_* */
    int32_t level;       /* codec level of a container (0 lossless ... 4); -1 for a tensor */
    int64_t layers;
    int64_t kv_heads;
    int64_t head_dim;
    int64_t tokens;
    int64_t nbytes;      /* layers * 2 * tokens * kv_heads * head_dim * element size */
} kvs_info;

/* ---- version ---------------------------------------------------------------------------- */

/* KVS_ABI_VERSION of the loaded library. */
int32_t kvs_abi_version(void);
/* e.g. "kvstore_c abi 2; chunk container v1; levels 0-4; frames KVF1" (static storage). */
const char *kvs_version_string(void);
/* The reason for the last failure on this thread ("" if none). */
const char *kvs_last_error(void);

/* ---- owned results ---------------------------------------------------------------------- */

void kvs_tensor_info(const kvs_tensor *t, kvs_info *out);
const void *kvs_tensor_data(const kvs_tensor *t);                 /* nbytes bytes, borrowed */
int kvs_tensor_copy(const kvs_tensor *t, void *dst, size_t capacity); /* capacity >= nbytes */
void kvs_tensor_free(kvs_tensor *t);

const uint8_t *kvs_bytes_data(const kvs_bytes *b);
size_t kvs_bytes_length(const kvs_bytes *b);
void kvs_bytes_free(kvs_bytes *b);

/* ---- chunk containers (KVCK) ------------------------------------------------------------ */

/* Shape, dtype and level from a container's header (checked, checksum not yet verified). */
int kvs_chunk_info(const void *data, size_t length, kvs_info *out);
/* Verifies the checksum and decodes any level (0-4) into a new tensor. */
int kvs_chunk_decode(const void *data, size_t length, kvs_tensor **out);
/* Encodes `kv` (nbytes of `dtype`, shape as in the conventions) at `level` 0-4 into a container. */
int kvs_chunk_encode(const void *kv, size_t nbytes, int32_t dtype, int64_t layers, int64_t kv_heads,
                     int64_t head_dim, int64_t tokens, int32_t level, kvs_bytes **out);
/* kvs_chunk_encode with a codec profile (schemas/codec-profile.md; `profile_len` bytes of JSON, checked
 * against the shape). NULL (profile_len 0), as kvs_chunk_encode: the default derived from the KV. */
int kvs_chunk_encode_profile(const void *kv, size_t nbytes, int32_t dtype, int64_t layers, int64_t kv_heads,
                             int64_t head_dim, int64_t tokens, int32_t level, const uint8_t *profile_json,
                             int64_t profile_len, kvs_bytes **out);

/* ---- context files: .kvc (`kvstore encode`) and safetensors (`kvstore put`) -------------- */

/* Decodes a .kvc file (KVCF): its KV, its token ids (int32 little-endian) and its metadata as a
 * JSON object of strings. Any of tokens/metadata may be NULL when not wanted. */
int kvs_file_decode(const void *data, size_t length, kvs_tensor **kv, kvs_bytes **tokens, kvs_bytes **metadata_json);
/* Encodes a context as a .kvc file at `level`, in chunks of `chunk_tokens` (as `kvstore encode`
 * without --profile: lossy levels use the codec profile derived from the KV). */
int kvs_file_encode(const void *kv, size_t nbytes, int32_t dtype, int64_t layers, int64_t kv_heads,
                    int64_t head_dim, const int32_t *tokens, int64_t token_count, const char *model,
                    int32_t level, int64_t chunk_tokens, kvs_bytes **out);
/* kvs_file_encode with a codec profile (as `kvstore encode --profile`): `profile_json` holds the
 * `profile_len` bytes of a profile file (schemas/codec-profile.md), checked against the KV's shape;
 * NULL (with profile_len 0) = the default derived from the KV, as kvs_file_encode. */
int kvs_file_encode_profile(const void *kv, size_t nbytes, int32_t dtype, int64_t layers, int64_t kv_heads,
                            int64_t head_dim, const int32_t *tokens, int64_t token_count, const char *model,
                            int32_t level, int64_t chunk_tokens, const uint8_t *profile_json, int64_t profile_len,
                            kvs_bytes **out);
/* Reads a safetensors context (as `kvstore put` does: tensors `kv` and `tokens`, I32 or I64), with the
 * same outputs as kvs_file_decode (metadata: the file's __metadata__). */
int kvs_safetensors_decode(const void *data, size_t length, kvs_tensor **kv, kvs_bytes **tokens, kvs_bytes **metadata_json);
/* Writes a context as a safetensors file (tensors `kv` and `tokens`, __metadata__.model), the
 * body `POST /v1/contexts` and `kvstore put` take. `model` may be NULL. */
int kvs_safetensors_encode(const void *kv, size_t nbytes, int32_t dtype, int64_t layers, int64_t kv_heads,
                           int64_t head_dim, const int32_t *tokens, int64_t token_count, const char *model,
                           kvs_bytes **out);

/* ---- frame streams (KVF1, the body of POST /v1/stream) ------------------------------------ */

#define KVS_EVENT_HEADER    0  /* json: the StreamHeader */
#define KVS_EVENT_CHUNK     1  /* kv: the decoded chunk (level, index, token range set) */
#define KVS_EVENT_RECOMPUTE 2  /* no KV: prefill tokens [token_start, token_end) from text */
#define KVS_EVENT_END       3  /* json: the StreamSummary; the stream is complete and checked */

typedef struct {
    int32_t kind;        /* KVS_EVENT_* */
    int32_t level;       /* chunk level 0-4; -1 for other events */
    int64_t index;       /* chunk index in the matched prefix */
    int64_t token_start; /* token range of the chunk in the query */
    int64_t token_end;
    int64_t payload_bytes; /* bytes of the frame's payload on the wire */
    const char *json;    /* header/end: the frame's JSON payload (not NUL-terminated), else NULL; */
    size_t json_length;  /*   valid until the next kvs_stream_* call on this stream */
} kvs_event;

/* A reader of one stream: feed the response body in pieces as they arrive, take events out. */
kvs_stream *kvs_stream_new(void);
/* Appends body bytes (copied). */
int kvs_stream_feed(kvs_stream *s, const void *data, size_t length);
/* The next event: returns 1 and fills `event` (and for a chunk `*kv`, a new tensor, when kv is not
 * NULL: decoding happens here), 0 when more bytes are needed, or a KVS_E_* code. Frames are checked
 * as StreamClient checks them (header first, chunks in order with the header's shape and dtype,
 * one end frame); an error frame returns KVS_E_SERVER with the server's message. */
int kvs_stream_next(kvs_stream *s, kvs_event *event, kvs_tensor **kv);
/* After the body ended: KVS_OK if the stream was complete (end frame, every chunk, nothing left
 * over), else KVS_E_STREAM saying what is missing. */
int kvs_stream_finish(kvs_stream *s);
void kvs_stream_free(kvs_stream *s);

/* ---- llama.cpp sequence states (llama_state_seq_get_data / llama_state_seq_set_data) ------ */

/* How an engine instance lays out a sequence's state; a restore needs the engine's own (learn it
 * from one state the engine wrote, e.g. of a one-token prompt). */
typedef struct {
    uint32_t stream_count;  /* KV streams of the context (1 unless n_seq_max > 1 with a unified cache off); 1-4096 */
    int32_t v_transposed;   /* 1 when V is stored transposed (no flash attention), else 0 */
    int32_t dtype;          /* the cache's element type: 1 F16 (default), 3 F32 (-ctk f32 -ctv f32) */
} kvs_llama_layout;

/* Models with sliding-window layers (Gemma 2/3, Cohere 2) keep two KV caches, written one after the
 * other: `sliding` is NULL for one cache, else `layers` flags (1 = the layer attends through a
 * window of `window` tokens), as kvs_gguf_model reports them. Such a cache holds only the last
 * `window` positions of its layers. */

/* Parses what llama_state_seq_get_data wrote for a model of this shape and caches (F16 or F32 KV)
 * and returns the KV of positions 0..count-1 in position order, every layer in model order (count
 * < 0: every cell, which must then be positions 0..n-1), and, when not NULL, the state's layout and
 * `window_start`: the first position the sliding layers hold; their rows before it are zero. */
int kvs_llama_state_decode(const void *data, size_t length, int64_t layers, int64_t kv_heads, int64_t head_dim,
                           const uint8_t *sliding, int64_t window, int64_t count, kvs_llama_layout *layout,
                           int64_t *window_start, kvs_tensor **kv);
/* The bytes llama_state_seq_set_data takes to hold `kv` (`tokens` cells of the layout's dtype) at
 * positions 0..tokens-1 in an engine of `layout`; the sliding layers keep their window only.
 * A layout field outside its range is KVS_E_ARGUMENT, before anything is allocated. */
int kvs_llama_state_encode(const void *kv, size_t nbytes, int32_t dtype, int64_t layers, int64_t kv_heads,
                           int64_t head_dim, int64_t tokens, const uint8_t *sliding, int64_t window,
                           const kvs_llama_layout *layout, kvs_bytes **out);
/* A GGUF model file's KV shape and the model id kvstore files its KV under (the sidecar's), as JSON:
 * {"identity", "architecture", "name", "sha256", "layers", "kv_heads", "head_dim", "sliding_window",
 * "sliding_layers"} (sliding_window 0 and sliding_layers [] for a model with one cache). */
int kvs_gguf_model(const char *path, kvs_bytes **json);

/* ---- embedded store (a store directory, as `kvstore put/get --store` use it) --------------- */

/* A store directory opened in this process: no server. Several processes may use one store at once
 * (its LMDB index allows it, as the CLI does); in one process the handles of one directory share one
 * open store. A handle may be used from several threads. */
typedef struct kvs_store kvs_store;

/* `space` in the calls below: a JSON object naming what stored KV must match to be reused:
 *   {"model": "vllm/<name>@sha256:<hex>", "dtype": "F16"|"BF16"|"F32", "layers": L, "kv_heads": H,
 *    "head_dim": D, "tenant": "..." (optional: the cache salt that keeps tenants apart)}
 * KV is stored and read in chunks of kvs_store_chunk_tokens tokens, keyed by the chained prefix hash
 * (schemas/store.md). */

/* Opens the store at `root` (creating it when `create` is 1). chunk_tokens: 0 = the store's own
 * (256 for a new store); another value must match the store's. */
int kvs_store_open(const char *root, int64_t chunk_tokens, int32_t create, kvs_store **out);
int64_t kvs_store_chunk_tokens(const kvs_store *s);
void kvs_store_close(kvs_store *s);
/* The longest stored prefix of `tokens` (`count` ids): its tokens and chunks (the last may be a
 * partial chunk). Either output may be NULL. */
int kvs_store_lookup(kvs_store *s, const char *space, const int32_t *tokens, int64_t count, int64_t *matched,
                     int64_t *chunks);
/* Decodes chunks [first_chunk, first_chunk + chunk_count) of that prefix into one tensor
 * [layers, 2, tokens, kv_heads, head_dim], at `level` (-1: the best stored). Every chunk is checked
 * (checksum, shape, dtype): a corrupt one fails the call with KVS_E_CORRUPT; chunks no longer
 * stored fail it with KVS_E_ARGUMENT. */
int kvs_store_read(kvs_store *s, const char *space, const int32_t *tokens, int64_t count, int32_t level,
                   int64_t first_chunk, int64_t chunk_count, kvs_tensor **kv);
/* Stores a context (KV of the space's dtype and shape, one row per token id) at `levels` (0-4), as
 * `kvstore put` does: chunks already stored are deduplicated. `report` (may be NULL): the put's
 * report as JSON. */
int kvs_store_put(kvs_store *s, const char *space, const void *kv, size_t nbytes, const int32_t *tokens,
                  int64_t count, const int32_t *levels, int64_t level_count, kvs_bytes **report);

#ifdef __cplusplus
}
#endif
#endif /* KVSTORE_H */
