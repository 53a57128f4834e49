/*
 * greeter-probe: a minimal HTTP/1.0 client for health checks and smoke tests.
 *
 *   greeter-probe [-t TIMEOUT_MS] [-a TOKEN] [-i] HOST PORT [PATH]
 *
 * Sends "GET PATH" (default "/") and prints the response body on stdout
 * (with -i, the whole response including the head).  "-a TOKEN" adds
 * "Authorization: Bearer TOKEN".
 *
 * Exit status: 0 for a 200 answer, 1 for any other HTTP status, 2 when the
 * server cannot be reached or the answer is not HTTP, 64 for usage errors.
 */
#define _POSIX_C_SOURCE 200809L

#include "greet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *PROG = "greeter-probe";

static void usage(void)
{
    fprintf(stderr, "usage: %s [-t TIMEOUT_MS] [-a TOKEN] [-i] HOST PORT [PATH]\n", PROG);
    exit(64);
}

int main(int argc, char **argv)
{
    long timeout_ms = 3000;
    const char *token = NULL, *host, *port, *path = "/";
    int include_head = 0, opt, fd, status;
    char err[512];
    struct greet_buf req = {0}, resp = {0};
    size_t body_off;

    while ((opt = getopt(argc, argv, "t:a:ih")) != -1) {
        switch (opt) {
        case 't': {
            char *end;
            timeout_ms = strtol(optarg, &end, 10);
            if (*end != '\0' || timeout_ms < 1 || timeout_ms > 600000)
                usage();
            break;
        }
        case 'a': token = optarg; break;
        case 'i': include_head = 1; break;
        default: usage();
        }
    }
    if (argc - optind < 2 || argc - optind > 3)
        usage();
    host = argv[optind];
    port = argv[optind + 1];
    if (argc - optind == 3)
        path = argv[optind + 2];
    if (path[0] != '/' || strpbrk(path, " \r\n"))
        usage();

    fd = greet_connect(host, port, (int)timeout_ms, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return 2;
    }
    if (greet_buf_printf(&req, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: %s/%s\r\n", path, host,
                         PROG, GREET_VERSION) != 0 ||
        (token && greet_buf_printf(&req, "Authorization: Bearer %s\r\n", token) != 0) ||
        greet_buf_append(&req, "\r\n", 2) != 0) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return 2;
    }
    if (greet_write_all(fd, req.data, req.len) != 0 ||
        greet_read_to_eof(fd, &resp, 4 * 1024 * 1024) != 0) {
        fprintf(stderr, "%s: %s:%s: no complete answer within %ld ms\n", PROG, host, port,
                timeout_ms);
        close(fd);
        return 2;
    }
    close(fd);
    if (greet_response_parse(resp.data, resp.len, &status, &body_off) != 0) {
        fprintf(stderr, "%s: %s:%s: not an HTTP response\n", PROG, host, port);
        return 2;
    }
    if (include_head)
        fwrite(resp.data, 1, resp.len, stdout);
    else
        fwrite(resp.data + body_off, 1, resp.len - body_off, stdout);
    fflush(stdout);
    if (status != 200) {
        fprintf(stderr, "%s: %s:%s%s answered %d\n", PROG, host, port, path, status);
        return 1;
    }
    greet_buf_free(&req);
    greet_buf_free(&resp);
    return 0;
}
