/*
 * wsgate: a WebSocket security gateway.
 * Caps shared by every module.  Every length and count read from the wire
 * is checked against one of these before any arithmetic is done on it.
 */
#ifndef WSGATE_H
#define WSGATE_H

#include <stddef.h>
#include <stdint.h>

#define WSG_VERSION_STRING	PACKAGE_VERSION

/* HTTP upgrade request and upstream response heads. */
#define WSG_MAX_HEADERS		64	/* header fields in one head */
#define WSG_MAX_HEADER_BYTES_LIMIT	(64 * 1024)	/* cap of max_header_bytes */
#define WSG_MAX_UPSTREAM_HEAD	(16 * 1024)	/* upstream response head */
#define WSG_MAX_INTERIM		8	/* 1xx answers before the 101 */
#define WSG_MAX_UPSTREAM_BODY	4096	/* body relayed with a refusal */
#define WSG_MAX_SUBPROTOCOLS	16	/* offered or configured */
#define WSG_MAX_TOKEN_LEN	128	/* one subprotocol name */

/* Frames. */
#define WSG_MAX_FRAME_SIZE_LIMIT	(64ULL * 1024 * 1024)
#define WSG_MAX_MESSAGE_SIZE_LIMIT	(1024ULL * 1024 * 1024)
#define WSG_MAX_CONTROL_PAYLOAD	125

/* Buffers and watermarks. */
#define WSG_HIGH_WATER		(256 * 1024)	/* far side output: stop reading */
#define WSG_LOW_WATER		(64 * 1024)	/* far side drained: resume */

#endif /* WSGATE_H */
