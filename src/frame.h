/*
 * RFC 6455 frame codec: header parsing, per-message rule checking, masking
 * and close-frame building.  Pure: bytes in, results out.
 */
#ifndef WSG_FRAME_H
#define WSG_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define WSG_FRAME_MAX_HEADER	14	/* 2 + 8 extended length + 4 mask */
#define WSG_CLOSE_FRAME_MAX	(WSG_FRAME_MAX_HEADER + 125)

enum wsg_opcode {
	WSG_OP_CONT = 0x0,
	WSG_OP_TEXT = 0x1,
	WSG_OP_BINARY = 0x2,
	WSG_OP_CLOSE = 0x8,
	WSG_OP_PING = 0x9,
	WSG_OP_PONG = 0xa
};

/*
 * Results.  Each failure maps to one close code and one reason code of
 * SPEC.md's second table (frame_result_close_code(), frame_result_reason()).
 */
enum wsg_frame_result {
	WSG_FRAME_OK = 0,
	WSG_FRAME_INCOMPLETE,		/* need more bytes */
	WSG_FRAME_PROTOCOL,		/* 1002 protocol_error */
	WSG_FRAME_TOO_LARGE,		/* 1009 frame_too_large */
	WSG_FRAME_MESSAGE_TOO_LARGE,	/* 1009 message_too_large */
	WSG_FRAME_INVALID_UTF8,		/* 1007 invalid_utf8 */
	WSG_FRAME_BINARY_DENIED		/* 1003 binary_denied */
};

struct wsg_frame {
	int		 f_fin;
	int		 f_rsv;		/* the three RSV bits, 0..7 */
	int		 f_opcode;
	int		 f_masked;
	uint8_t		 f_mask[4];
	uint64_t	 f_len;		/* payload length */
	size_t		 f_hdr_len;	/* 2..14 */
};

struct wsg_frame_limits {
	uint64_t	 fl_max_frame;
	uint64_t	 fl_max_message;
	int		 fl_allow_binary;
	int		 fl_expect_masked;	/* 1 from clients, 0 from servers */
};

/* State of the data message being received in one direction. */
struct wsg_msg_state {
	int		 ms_opcode;	/* TEXT or BINARY while in progress, else 0 */
	uint64_t	 ms_len;	/* payload bytes so far */
	uint32_t	 ms_utf8;	/* utf8_validate() state across fragments */
};

/*
 * Decode a frame header from the first len bytes of buf.  INCOMPLETE when
 * fewer than the header's bytes are there; PROTOCOL for a 64-bit length
 * with the top bit set or a length not in its shortest form.
 */
enum wsg_frame_result	frame_parse_header(const uint8_t *, size_t,
			    struct wsg_frame *);

/*
 * Check a parsed header against RFC 6455 and the limits: reserved bits and
 * opcodes, masking direction, control frames (<= 125 bytes, FIN set),
 * continuation order, max frame and message sizes, binary allowed.  On OK
 * the message state is advanced (a data frame starts or continues the
 * message; the caller ends it with frame_msg_end() after the payload of
 * a FIN frame).  Control frames leave the state alone.
 */
enum wsg_frame_result	frame_check_header(const struct wsg_frame *,
			    const struct wsg_frame_limits *,
			    struct wsg_msg_state *);

/*
 * A data frame's payload has been seen in full.  When it had FIN, the
 * message ends: a text message whose UTF-8 is incomplete is INVALID_UTF8
 * (only if validate_utf8), and the state is reset.
 */
enum wsg_frame_result	frame_msg_end(const struct wsg_frame *,
			    struct wsg_msg_state *, int);

/*
 * A fresh masking key for a frame the gateway sends upstream, where it is
 * the WebSocket client (RFC 6455 5.3: unpredictable, from a strong source).
 */
void	frame_mask_key(uint8_t[4]);

/*
 * XOR n bytes of src with the mask, starting at payload offset off, into
 * dst (which may equal src).
 */
void	frame_unmask(uint8_t *, const uint8_t *, size_t, const uint8_t[4],
	    uint64_t);

/*
 * Validate an (unmasked) close payload: empty, or a 2-byte code valid per
 * RFC 6455 7.4 (1000-1003, 1007-1014, 3000-4999) and, if validate_utf8,
 * a UTF-8 reason.  Returns OK, PROTOCOL or INVALID_UTF8.  *code gets the
 * code, or 1005 when the payload is empty.
 */
enum wsg_frame_result	frame_check_close(const uint8_t *, size_t, int,
			    uint16_t *);

/*
 * Write a frame header into out (at least WSG_FRAME_MAX_HEADER bytes);
 * mask is used when non-NULL.  Returns the header length.
 */
size_t	frame_build_header(uint8_t *, int, int, uint64_t, const uint8_t *);

/*
 * Write a whole close frame with code and reason (truncated to fit 125
 * bytes on a UTF-8 boundary) into out (at least WSG_CLOSE_FRAME_MAX
 * bytes), masked when mask is non-NULL.  Returns its length.
 */
size_t	frame_build_close(uint8_t *, uint16_t, const char *, const uint8_t *);

/* The close code (1002, 1007, 1009, 1003) and reason code of a failure. */
uint16_t	 frame_result_close_code(enum wsg_frame_result);
const char	*frame_result_reason(enum wsg_frame_result);

#endif /* WSG_FRAME_H */
