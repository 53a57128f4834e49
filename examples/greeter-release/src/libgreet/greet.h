/*
 * libgreet: the small support library shared by the greeter programs.
 *
 *   - a "key = value" configuration file reader,
 *   - an HTTP/1.0 request reader/parser and response writer,
 *   - TCP helpers (listen, connect with timeout, socket timeouts),
 *   - a growable string buffer,
 *   - process helpers (SIGTERM/SIGINT flag, pidfile).
 *
 * Plain C99 + POSIX, no external dependencies.
 */
#ifndef GREET_H
#define GREET_H

#include <signal.h>
#include <stddef.h>

#define GREET_VERSION "1.0.0"

/* ---------------------------------------------------------------- config */

struct greet_kv {
    char *key;
    char *value;
};

struct greet_config {
    struct greet_kv *items;
    size_t len;
    size_t cap;
};

/*
 * Reads a configuration file: one "key = value" (or "key=value") per line,
 * blank lines and lines starting with '#' are ignored, surrounding
 * whitespace is trimmed.  A later key overrides an earlier one.
 * Returns 0 on success, -1 on error with a message in err.
 */
int greet_config_load(const char *path, struct greet_config *cfg, char *err, size_t errlen);
/* Value of key, or def when the key is absent. */
const char *greet_config_get(const struct greet_config *cfg, const char *key, const char *def);
/* Integer value of key, or def when absent; -1 with a message when not an integer in [min,max]. */
int greet_config_get_long(const struct greet_config *cfg, const char *key, long def, long min,
                          long max, long *out, char *err, size_t errlen);
void greet_config_free(struct greet_config *cfg);

/* ---------------------------------------------------------------- buffers */

struct greet_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
};

/* Appends formatted text; returns 0, or -1 when out of memory. */
int greet_buf_printf(struct greet_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int greet_buf_append(struct greet_buf *b, const void *data, size_t len);
void greet_buf_free(struct greet_buf *b);

/* ---------------------------------------------------------------- HTTP */

#define GREET_MAX_REQUEST 8192
#define GREET_MAX_HEADERS 32

struct greet_header {
    const char *name;  /* points into the request buffer */
    const char *value; /* points into the request buffer */
};

struct greet_request {
    char buf[GREET_MAX_REQUEST + 1]; /* raw head, rewritten in place by the parser */
    size_t len;                      /* bytes of the raw head */
    const char *method;
    const char *target; /* full request target, e.g. "/stats?x=1" */
    char path[512];     /* target without the query string */
    const char *version;
    struct greet_header headers[GREET_MAX_HEADERS];
    size_t nheaders;
};

/*
 * Reads a request head (up to the empty line) from fd into req->buf.
 * Returns 0 on success, or an HTTP status to answer with:
 * 400 (malformed / connection closed early), 408 (timeout), 431 (too large).
 * The raw bytes are kept in req->buf/req->len, so a proxy can forward them
 * before calling greet_request_parse.
 */
int greet_request_read(int fd, struct greet_request *req);
/* Parses req->buf in place. Returns 0, or 400 / 505 on malformed input. */
int greet_request_parse(struct greet_request *req);
/* Case-insensitive header lookup; NULL when absent. */
const char *greet_request_header(const struct greet_request *req, const char *name);

const char *greet_status_text(int status);
/*
 * Writes a complete HTTP/1.0 response with Content-Type, Content-Length,
 * Connection: close and the given extra header lines (each ending in
 * "\r\n", may be NULL).  The body is left out when head_only is set.
 */
int greet_send_response(int fd, int status, const char *content_type, const char *extra_headers,
                        const char *body, size_t body_len, int head_only);

/*
 * Reads until EOF (at most max bytes) into b.  Returns 0, or -1 on a read
 * error/timeout or when the response exceeds max.
 */
int greet_read_to_eof(int fd, struct greet_buf *b, size_t max);
/*
 * Parses the status line of a raw response.  On success returns 0 and sets
 * *status and *body_off (offset of the body, after the blank line).
 */
int greet_response_parse(const char *data, size_t len, int *status, size_t *body_off);

/* ---------------------------------------------------------------- network */

/* write(2) until everything is written (retries on EINTR). 0 or -1. */
int greet_write_all(int fd, const void *data, size_t len);
/* Sets SO_RCVTIMEO and SO_SNDTIMEO. */
int greet_set_timeouts(int fd, int timeout_ms);
/* Binds and listens (SO_REUSEADDR). Returns the fd, or -1 with a message. */
int greet_listen(const char *address, const char *port, int backlog, char *err, size_t errlen);
/* Connects with a timeout; returns the fd (with I/O timeouts set), or -1 with a message. */
int greet_connect(const char *host, const char *port, int timeout_ms, char *err, size_t errlen);
/*
 * Splits "host:port" or "[v6]:port" into its parts.  Returns 0, or -1 when
 * malformed.
 */
int greet_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen);
/* Formats the peer of a connected socket as "ip:port" (or "?"). */
void greet_peer_name(int fd, char *out, size_t outlen);

/* ---------------------------------------------------------------- process */

/* Set to 1 by SIGTERM / SIGINT after greet_install_stop_handlers(). */
extern volatile sig_atomic_t greet_stop_requested;
/* Installs SIGTERM/SIGINT handlers (no SA_RESTART) and ignores SIGPIPE. */
int greet_install_stop_handlers(void);
/* Writes our pid to path (atomically, via a temporary file). 0 or -1. */
int greet_pidfile_write(const char *path, char *err, size_t errlen);
/* Removes path if it still holds our pid. */
void greet_pidfile_remove(const char *path);

/*
 * Waits until fd is readable, a stop was requested, or timeout_ms passed.
 * Returns 1 when readable, 0 otherwise (timeout, EINTR, or stop).
 */
int greet_wait_readable(int fd, int timeout_ms);

/* printf-style log line to stderr, prefixed with an ISO-8601 UTC timestamp and the program name. */
void greet_log(const char *prog, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif /* GREET_H */
