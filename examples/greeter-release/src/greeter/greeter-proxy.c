/*
 * greeter-proxy: a round-robin HTTP/1.0 proxy in front of greeter servers.
 *
 *   greeter-proxy CONFIG
 *
 * Every request goes to the next backend in turn; a backend that refuses
 * the connection is skipped (and the next one tried), so one dead server
 * costs a retry, not an error.  Responses carry an "X-Greeter-Backend"
 * header naming the backend that answered.
 *
 *   GET /proxy/status  the backends with their counters (answered locally)
 *
 * SIGTERM/SIGINT stop it cleanly (pidfile removed, exit 0).
 */
#define _POSIX_C_SOURCE 200809L

#include "greet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *PROG = "greeter-proxy";

#define MAX_BACKENDS 256
#define MAX_RESPONSE (1024 * 1024)

struct backend {
    char host[256];
    char port[8];
    char label[272]; /* host:port, or [host]:port for IPv6 */
    unsigned long ok;
    unsigned long failed;
    int up; /* state seen on the last attempt: 1 up, 0 down, -1 never tried */
};

struct proxy {
    struct greet_config cfg;
    struct backend backends[MAX_BACKENDS];
    size_t nbackends;
    size_t next;
    long connect_timeout_ms;
    long request_timeout_ms;
    unsigned long requests;
};

static int parse_backends(struct proxy *px, const char *list, char *err, size_t errlen)
{
    const char *p = list;
    while (*p) {
        char item[300];
        size_t len = strcspn(p, ",");
        if (len > 0) {
            struct backend *b;
            if (len >= sizeof(item)) {
                snprintf(err, errlen, "backends: entry too long");
                return -1;
            }
            if (px->nbackends == MAX_BACKENDS) {
                snprintf(err, errlen, "backends: more than %d entries", MAX_BACKENDS);
                return -1;
            }
            memcpy(item, p, len);
            item[len] = '\0';
            b = &px->backends[px->nbackends];
            if (greet_split_hostport(item, b->host, sizeof(b->host), b->port, sizeof(b->port)) != 0) {
                snprintf(err, errlen, "backends: '%s' is not host:port", item);
                return -1;
            }
            snprintf(b->label, sizeof(b->label), strchr(b->host, ':') ? "[%s]:%s" : "%s:%s",
                     b->host, b->port);
            b->up = -1;
            px->nbackends++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static void send_text(int fd, int status, const char *body)
{
    greet_send_response(fd, status, "text/plain; charset=utf-8", NULL, body, strlen(body), 0);
}

static void send_status(struct proxy *px, int fd)
{
    struct greet_buf b = {0};
    size_t i;
    int rc = greet_buf_printf(&b, "greeter-proxy: %lu request(s), %lu backend(s)\n", px->requests,
                              (unsigned long)px->nbackends);
    for (i = 0; i < px->nbackends; i++) {
        const struct backend *be = &px->backends[i];
        rc |= greet_buf_printf(&b, "  %s  %-5s ok=%lu failed=%lu\n", be->label,
                               be->up < 0 ? "?" : be->up ? "up" : "down", be->ok, be->failed);
    }
    if (rc != 0)
        send_text(fd, 500, "out of memory\n");
    else
        send_text(fd, 200, b.data);
    greet_buf_free(&b);
}

/*
 * Forwards the raw request head to one backend and relays its response with
 * an added X-Greeter-Backend header.  Returns 0 when the client got an
 * answer, 1 when the backend could not be reached (try the next one).
 */
static int forward(struct proxy *px, struct backend *be, const struct greet_request *req, int cfd,
                   int *status_out)
{
    char err[512], extra[400];
    struct greet_buf resp = {0};
    size_t body_off, line_end;
    int bfd, status;

    bfd = greet_connect(be->host, be->port, (int)px->connect_timeout_ms, err, sizeof(err));
    if (bfd < 0) {
        greet_log(PROG, "backend %s down: %s", be->label, err);
        be->failed++;
        be->up = 0;
        return 1;
    }
    greet_set_timeouts(bfd, (int)px->request_timeout_ms);
    if (greet_write_all(bfd, req->buf, req->len) != 0 ||
        greet_read_to_eof(bfd, &resp, MAX_RESPONSE) != 0 ||
        greet_response_parse(resp.data, resp.len, &status, &body_off) != 0) {
        greet_log(PROG, "backend %s: broken response", be->label);
        close(bfd);
        greet_buf_free(&resp);
        be->failed++;
        be->up = 0;
        return 1;
    }
    close(bfd);
    be->ok++;
    be->up = 1;

    line_end = (size_t)(strchr(resp.data, '\n') - resp.data) + 1; /* parse checked it exists */
    snprintf(extra, sizeof(extra), "X-Greeter-Backend: %s\r\n", be->label);
    if (greet_write_all(cfd, resp.data, line_end) == 0 &&
        greet_write_all(cfd, extra, strlen(extra)) == 0)
        greet_write_all(cfd, resp.data + line_end, resp.len - line_end);
    greet_buf_free(&resp);
    *status_out = status;
    return 0;
}

static void handle(struct proxy *px, int cfd)
{
    static struct greet_request req;     /* what the backend gets, verbatim */
    static struct greet_request parsed;  /* parsed copy, to route */
    char peer[80];
    int status;
    size_t tries;

    greet_peer_name(cfd, peer, sizeof(peer));
    status = greet_request_read(cfd, &req);
    if (status < 0)
        return;
    if (status == 0) {
        memcpy(parsed.buf, req.buf, req.len + 1);
        parsed.len = req.len;
        status = greet_request_parse(&parsed);
    }
    if (status != 0) {
        greet_log(PROG, "%s bad request -> %d", peer, status);
        send_text(cfd, status, greet_status_text(status));
        return;
    }
    px->requests++;

    if (strcmp(parsed.path, "/proxy/status") == 0) {
        send_status(px, cfd);
        greet_log(PROG, "%s \"%s %s\" 200 (local)", peer, parsed.method, parsed.target);
        return;
    }
    if (px->nbackends == 0) {
        send_text(cfd, 503, "no backends configured\n");
        greet_log(PROG, "%s \"%s %s\" 503 (no backends)", peer, parsed.method, parsed.target);
        return;
    }
    for (tries = 0; tries < px->nbackends && !greet_stop_requested; tries++) {
        struct backend *be = &px->backends[px->next];
        px->next = (px->next + 1) % px->nbackends;
        if (forward(px, be, &req, cfd, &status) == 0) {
            greet_log(PROG, "%s \"%s %s\" %d via %s", peer, parsed.method, parsed.target, status,
                      be->label);
            return;
        }
    }
    send_text(cfd, 502, "all backends are down\n");
    greet_log(PROG, "%s \"%s %s\" 502 (all backends down)", peer, parsed.method, parsed.target);
}

int main(int argc, char **argv)
{
    static struct proxy px;
    char err[512];
    const char *listen_address, *port, *pidfile;
    long port_n;
    int lfd;

    if (argc == 2 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("greeter-proxy %s\n", GREET_VERSION);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
        return 2;
    }
    if (greet_config_load(argv[1], &px.cfg, err, sizeof(err)) != 0) {
        greet_log(PROG, "config: %s", err);
        return 1;
    }
    listen_address = greet_config_get(&px.cfg, "listen_address", "0.0.0.0");
    port = greet_config_get(&px.cfg, "port", "8000");
    pidfile = greet_config_get(&px.cfg, "pidfile", NULL);
    if (pidfile && *pidfile == '\0')
        pidfile = NULL;
    if (greet_config_get_long(&px.cfg, "port", 8000, 1, 65535, &port_n, err, sizeof(err)) != 0 ||
        greet_config_get_long(&px.cfg, "connect_timeout_ms", 1000, 1, 600000,
                              &px.connect_timeout_ms, err, sizeof(err)) != 0 ||
        greet_config_get_long(&px.cfg, "request_timeout_ms", 5000, 1, 600000,
                              &px.request_timeout_ms, err, sizeof(err)) != 0 ||
        parse_backends(&px, greet_config_get(&px.cfg, "backends", ""), err, sizeof(err)) != 0) {
        greet_log(PROG, "config: %s", err);
        return 1;
    }

    if (greet_install_stop_handlers() != 0) {
        greet_log(PROG, "cannot install signal handlers: %s", strerror(errno));
        return 1;
    }
    lfd = greet_listen(listen_address, port, 64, err, sizeof(err));
    if (lfd < 0) {
        greet_log(PROG, "%s", err);
        return 1;
    }
    if (pidfile && greet_pidfile_write(pidfile, err, sizeof(err)) != 0) {
        greet_log(PROG, "%s", err);
        close(lfd);
        return 1;
    }
    greet_log(PROG, "listening on %s:%s, %lu backend(s)", listen_address, port,
              (unsigned long)px.nbackends);

    while (!greet_stop_requested) {
        int cfd;
        if (!greet_wait_readable(lfd, 1000))
            continue;
        cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
                struct timespec pause = {0, 100000000L};
                greet_log(PROG, "accept: %s", strerror(errno));
                nanosleep(&pause, NULL);
            }
            continue;
        }
        greet_set_timeouts(cfd, (int)px.request_timeout_ms);
        handle(&px, cfd);
        close(cfd);
    }

    close(lfd);
    if (pidfile)
        greet_pidfile_remove(pidfile);
    greet_log(PROG, "stop requested; proxied %lu request(s); bye", px.requests);
    greet_config_free(&px.cfg);
    return 0;
}
