/*
 * ioeng_nbd_proto.h - NBD protocol constants and big-endian wire helpers for ioeng_nbd.
 *
 * Values from the NBD protocol specification (doc/proto.md of the NetworkBlockDevice
 * project): fixed newstyle handshake, simple and structured replies, block status.
 */
#ifndef IOENG_NBD_PROTO_H
#define IOENG_NBD_PROTO_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

/* Handshake. */
#define NBD_MAGIC           0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_IHAVEOPT        0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC       0x0003e889045565a9ull

#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0) /* handshake flags (server) */
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0) /* client flags */
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* Options. */
#define NBD_OPT_EXPORT_NAME      1u
#define NBD_OPT_ABORT            2u
#define NBD_OPT_LIST             3u
#define NBD_OPT_STARTTLS         5u
#define NBD_OPT_INFO             6u
#define NBD_OPT_GO               7u
#define NBD_OPT_STRUCTURED_REPLY 8u
#define NBD_OPT_LIST_META_CONTEXT 9u
#define NBD_OPT_SET_META_CONTEXT 10u

/* Option replies; errors have bit 31 set. */
#define NBD_REP_ACK            1u
#define NBD_REP_SERVER         2u
#define NBD_REP_INFO           3u
#define NBD_REP_META_CONTEXT   4u
#define NBD_REP_ERR_UNSUP      (0x80000000u + 1)
#define NBD_REP_ERR_INVALID    (0x80000000u + 3)
#define NBD_REP_ERR_UNKNOWN    (0x80000000u + 6)
#define NBD_REP_ERR_SHUTDOWN   (0x80000000u + 7)
#define NBD_REP_ERR_TOO_BIG    (0x80000000u + 9)

#define NBD_INFO_EXPORT     0u
#define NBD_INFO_NAME       1u
#define NBD_INFO_BLOCK_SIZE 3u

/* Transmission. */
#define NBD_REQUEST_MAGIC      0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_REQ_HDR_LEN        28u
#define NBD_REPLY_HDR_LEN      16u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu
#define NBD_SREPLY_HDR_LEN     20u

/* Structured reply chunks. */
#define NBD_REPLY_FLAG_DONE         (1u << 0)
#define NBD_REPLY_TYPE_NONE         0u
#define NBD_REPLY_TYPE_OFFSET_DATA  1u
#define NBD_REPLY_TYPE_BLOCK_STATUS 5u
#define NBD_REPLY_TYPE_ERROR        ((1u << 15) + 1)

/* The base:allocation metadata context. */
#define NBD_META_BASE_ALLOCATION "base:allocation"
#define NBD_META_ALLOC_ID        1u /* our id for it */
#define NBD_STATE_HOLE           (1u << 0)
#define NBD_STATE_ZERO           (1u << 1)

#define NBD_CMD_READ         0u
#define NBD_CMD_WRITE        1u
#define NBD_CMD_DISC         2u
#define NBD_CMD_FLUSH        3u
#define NBD_CMD_TRIM         4u
#define NBD_CMD_CACHE        5u
#define NBD_CMD_WRITE_ZEROES 6u
#define NBD_CMD_BLOCK_STATUS 7u
#define NBD_CMD_COUNT        8u /* for per-type counters; larger types count as "other" */

#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF        (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* Error values (the reply's error field). */
#define NBD_EPERM     1u
#define NBD_EIO       5u
#define NBD_ENOMEM    12u
#define NBD_EINVAL    22u
#define NBD_ENOSPC    28u
#define NBD_ENOTSUP   95u
#define NBD_ESHUTDOWN 108u

/* Strings in options (export names) are at most 4096 bytes by the spec. */
#define NBD_MAX_STRING 4096u

static inline void put16(uint8_t *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); }
static inline void put32(uint8_t *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static inline void put64(uint8_t *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }
static inline uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return be16toh(v); }
static inline uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static inline uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }

#endif /* IOENG_NBD_PROTO_H */
