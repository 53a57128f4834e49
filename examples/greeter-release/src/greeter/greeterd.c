/*
 * greeterd: a tiny HTTP/1.0 server that says who it is.
 *
 *   greeterd CONFIG
 *
 *   GET /        the greeting, the instance identity (deployment, instance
 *                group, index, AZ, id, address), a request counter, the
 *                uptime and the peers it was given
 *   GET /health  "ok"
 *   GET /stats   machine-readable counters ("key=value" lines); needs
 *                "Authorization: Bearer <stats_token>" when a token is set
 *
 * HEAD is accepted wherever GET is.  SIGTERM/SIGINT stop it cleanly: the
 * listening socket is closed, the pidfile removed, and it exits 0.
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

static const char *PROG = "greeterd";

struct server {
    struct greet_config cfg;
    const char *listen_address;
    const char *port;
    const char *pidfile;
    const char *greeting;
    const char *motd;
    const char *stats_token;
    const char *peers; /* comma separated host:port list */
    long request_timeout_ms;
    time_t started;
    unsigned long requests;
    unsigned long errors;
};

static const char *cfg(const struct server *s, const char *key, const char *def)
{
    const char *v = greet_config_get(&s->cfg, key, def);
    return (v && *v) ? v : def;
}

static size_t count_peers(const char *peers)
{
    size_t n = 0;
    const char *p = peers;
    while (p && *p) {
        size_t len = strcspn(p, ",");
        if (len > 0)
            n++;
        p += len;
        if (*p == ',')
            p++;
    }
    return n;
}

static int render_index(struct server *s, struct greet_buf *b)
{
    const char *az = cfg(s, "az", "-");
    const char *bootstrap = cfg(s, "bootstrap", "false");
    const char *p = s->peers;
    size_t npeers = count_peers(s->peers);
    int rc = 0;

    rc |= greet_buf_printf(b, "%s\n\n", s->greeting);
    rc |= greet_buf_printf(b, "  instance    %s/%s (index %s%s)\n", cfg(s, "instance_group", "greeter"),
                           cfg(s, "id", "unknown-id"), cfg(s, "index", "0"),
                           strcmp(bootstrap, "true") == 0 ? ", bootstrap" : "");
    rc |= greet_buf_printf(b, "  deployment  %s\n", cfg(s, "deployment", "-"));
    rc |= greet_buf_printf(b, "  az          %s\n", az);
    rc |= greet_buf_printf(b, "  address     %s:%s\n", cfg(s, "address", s->listen_address), s->port);
    rc |= greet_buf_printf(b, "  requests    %lu\n", s->requests);
    rc |= greet_buf_printf(b, "  uptime      %lds\n", (long)(time(NULL) - s->started));
    rc |= greet_buf_printf(b, "  peers       %lu\n", (unsigned long)npeers);
    while (p && *p) {
        size_t len = strcspn(p, ",");
        if (len > 0)
            rc |= greet_buf_printf(b, "    - %.*s\n", (int)len, p);
        p += len;
        if (*p == ',')
            p++;
    }
    if (s->motd)
        rc |= greet_buf_printf(b, "\n%s\n", s->motd);
    return rc;
}

static int render_stats(struct server *s, struct greet_buf *b)
{
    int rc = 0;
    rc |= greet_buf_printf(b, "id=%s\n", cfg(s, "id", "unknown-id"));
    rc |= greet_buf_printf(b, "index=%s\n", cfg(s, "index", "0"));
    rc |= greet_buf_printf(b, "az=%s\n", cfg(s, "az", ""));
    rc |= greet_buf_printf(b, "requests=%lu\n", s->requests);
    rc |= greet_buf_printf(b, "errors=%lu\n", s->errors);
    rc |= greet_buf_printf(b, "uptime_seconds=%ld\n", (long)(time(NULL) - s->started));
    rc |= greet_buf_printf(b, "peers=%lu\n", (unsigned long)count_peers(s->peers));
    return rc;
}

static int authorized(const struct server *s, const struct greet_request *req)
{
    const char *auth;
    if (!s->stats_token)
        return 1;
    auth = greet_request_header(req, "Authorization");
    return auth && strncmp(auth, "Bearer ", 7) == 0 && strcmp(auth + 7, s->stats_token) == 0;
}

static void send_text(int fd, int status, const char *extra, const char *body, int head_only)
{
    greet_send_response(fd, status, "text/plain; charset=utf-8", extra, body, strlen(body),
                        head_only);
}

static void handle(struct server *s, int fd)
{
    static struct greet_request req; /* large; one request at a time */
    struct greet_buf body = {0};
    char peer[80];
    int status, head_only;

    greet_peer_name(fd, peer, sizeof(peer));
    status = greet_request_read(fd, &req);
    if (status < 0)
        return; /* connected and closed without a byte: a TCP health check */
    if (status == 0)
        status = greet_request_parse(&req);
    if (status != 0) {
        s->errors++;
        greet_log(PROG, "%s bad request -> %d", peer, status);
        send_text(fd, status, NULL, greet_status_text(status), 0);
        return;
    }

    s->requests++;
    head_only = strcmp(req.method, "HEAD") == 0;
    if (!head_only && strcmp(req.method, "GET") != 0) {
        status = 405;
        send_text(fd, status, "Allow: GET, HEAD\r\n", "method not allowed\n", 0);
    } else if (strcmp(req.path, "/") == 0) {
        status = 200;
        if (render_index(s, &body) != 0) {
            status = 500;
            send_text(fd, status, NULL, "out of memory\n", head_only);
        } else {
            send_text(fd, status, NULL, body.data, head_only);
        }
    } else if (strcmp(req.path, "/health") == 0) {
        status = 200;
        send_text(fd, status, NULL, "ok\n", head_only);
    } else if (strcmp(req.path, "/stats") == 0) {
        if (!authorized(s, &req)) {
            status = 401;
            send_text(fd, status, "WWW-Authenticate: Bearer\r\n", "stats token required\n",
                      head_only);
        } else if (render_stats(s, &body) != 0) {
            status = 500;
            send_text(fd, status, NULL, "out of memory\n", head_only);
        } else {
            status = 200;
            send_text(fd, status, NULL, body.data, head_only);
        }
    } else {
        status = 404;
        send_text(fd, status, NULL, "not found\n", head_only);
    }
    greet_log(PROG, "%s \"%s %s\" %d", peer, req.method, req.target, status);
    greet_buf_free(&body);
}

int main(int argc, char **argv)
{
    struct server s;
    char err[512];
    long port;
    int lfd;

    memset(&s, 0, sizeof(s));
    if (argc == 2 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("greeterd %s\n", GREET_VERSION);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
        return 2;
    }
    if (greet_config_load(argv[1], &s.cfg, err, sizeof(err)) != 0) {
        greet_log(PROG, "config: %s", err);
        return 1;
    }
    s.listen_address = cfg(&s, "listen_address", "0.0.0.0");
    s.port = cfg(&s, "port", "8080");
    s.pidfile = cfg(&s, "pidfile", NULL);
    s.greeting = cfg(&s, "greeting", "Hello from greeter!");
    s.motd = cfg(&s, "motd", NULL);
    s.stats_token = cfg(&s, "stats_token", NULL);
    s.peers = cfg(&s, "peers", "");
    if (greet_config_get_long(&s.cfg, "port", 8080, 1, 65535, &port, err, sizeof(err)) != 0 ||
        greet_config_get_long(&s.cfg, "request_timeout_ms", 5000, 1, 600000, &s.request_timeout_ms,
                              err, sizeof(err)) != 0) {
        greet_log(PROG, "config: %s", err);
        return 1;
    }

    if (greet_install_stop_handlers() != 0) {
        greet_log(PROG, "cannot install signal handlers: %s", strerror(errno));
        return 1;
    }
    lfd = greet_listen(s.listen_address, s.port, 64, err, sizeof(err));
    if (lfd < 0) {
        greet_log(PROG, "%s", err);
        return 1;
    }
    if (s.pidfile && greet_pidfile_write(s.pidfile, err, sizeof(err)) != 0) {
        greet_log(PROG, "%s", err);
        close(lfd);
        return 1;
    }
    s.started = time(NULL);
    greet_log(PROG, "listening on %s:%s as %s/%s (index %s, az %s) with %lu peer(s)",
              s.listen_address, s.port, cfg(&s, "instance_group", "greeter"),
              cfg(&s, "id", "unknown-id"), cfg(&s, "index", "0"), cfg(&s, "az", "-"),
              (unsigned long)count_peers(s.peers));

    while (!greet_stop_requested) {
        int cfd;
        if (!greet_wait_readable(lfd, 1000))
            continue;
        cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
                greet_log(PROG, "accept: %s", strerror(errno));
                struct timespec pause = {0, 100000000L};
                nanosleep(&pause, NULL); /* e.g. EMFILE: don't spin */
            }
            continue;
        }
        greet_set_timeouts(cfd, (int)s.request_timeout_ms);
        handle(&s, cfd);
        close(cfd);
    }

    close(lfd);
    if (s.pidfile)
        greet_pidfile_remove(s.pidfile);
    greet_log(PROG, "stop requested; served %lu request(s); bye", s.requests);
    greet_config_free(&s.cfg);
    return 0;
}
